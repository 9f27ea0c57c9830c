"""Budget meters as a fold over a run's events, so live runs, continued runs and backtests agree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tether.guard.decisions import Decision
from tether.policy.schema import BudgetPolicy


@dataclass
class Meters:
    usd: float = 0.0
    tokens: int = 0
    steps: int = 0
    tool_calls: int = 0
    active_s: float = 0.0  # wall time of closed segments (a paused run does not spend wall time)
    segment_start: float | None = None
    last_ts: float | None = None

    def observe(self, type_: str, payload: dict[str, Any], ts: float) -> None:
        if type_ in ("run_started", "run_continued", "run_resumed"):
            if self.segment_start is not None and self.last_ts is not None:
                # the process died: its segment ended with its last event, not at the resume
                self.active_s += self.last_ts - self.segment_start
            self.segment_start = ts
        elif type_ == "model_response":
            self.steps += 1
            usage = payload.get("usage", {})
            self.tokens += int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))
            self.usd += float(payload.get("cost_usd") or 0.0)
        elif type_ == "tool_call":
            self.tool_calls += 1
        elif type_ in ("run_paused", "run_finished") and self.segment_start is not None:
            self.active_s += ts - self.segment_start
            self.segment_start = None
        self.last_ts = ts

    def wall_s(self, now: float | None = None) -> float:
        """Active wall time; `now` is the clock for a live run, else the last event's time."""
        if self.segment_start is None:
            return self.active_s
        end = now if now is not None else (self.last_ts or self.segment_start)
        return self.active_s + max(0.0, end - self.segment_start)

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        return {"usd": round(self.usd, 6), "tokens": self.tokens, "steps": self.steps,
                "tool_calls": self.tool_calls, "wall_s": round(self.wall_s(now), 3)}


def check_model_call(meters: Meters, budget: BudgetPolicy, prompt_tokens: int, prompt_usd: float,
                     now: float | None) -> Decision | None:
    """Stop before a model call that is certain to break a budget: its prompt alone would."""
    if budget.max_steps is not None and meters.steps >= budget.max_steps:
        return Decision("stop", "budget.max_steps", f"step budget of {budget.max_steps} used")
    if budget.max_tokens is not None and meters.tokens + prompt_tokens > budget.max_tokens:
        return Decision("stop", "budget.max_tokens",
                        f"{meters.tokens} tokens used; the next prompt (~{prompt_tokens}) would pass "
                        f"the budget of {budget.max_tokens}")
    if budget.max_usd is not None and meters.usd + prompt_usd > budget.max_usd:
        return Decision("stop", "budget.max_usd",
                        f"${meters.usd:.4f} spent; the next call (≥ ${prompt_usd:.4f}) would pass "
                        f"the budget of ${budget.max_usd:.2f}")
    return check_wall(meters, budget, now)


def check_tool_call(meters: Meters, budget: BudgetPolicy, now: float | None) -> Decision | None:
    """Checked once the call's tool_call event is recorded, so the meter already counts it."""
    if budget.max_tool_calls is not None and meters.tool_calls > budget.max_tool_calls:
        return Decision("stop", "budget.max_tool_calls", f"tool-call budget of {budget.max_tool_calls} used")
    return check_wall(meters, budget, now)


def check_wall(meters: Meters, budget: BudgetPolicy, now: float | None) -> Decision | None:
    if budget.max_wall_s is not None and meters.wall_s(now) >= budget.max_wall_s:
        return Decision("stop", "budget.max_wall_s", f"wall-time budget of {budget.max_wall_s:g}s used")
    return None
