"""Meters as a fold over a run's events (money, tokens, steps, tool calls, active wall time), so
live runs, continued runs, summaries and backtests agree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tether.ledger import events as ev


@dataclass
class Meters:
    usd: float = 0.0
    tokens: int = 0
    steps: int = 0
    attempt_start: int = 0  # steps taken before the current attempt (see [agent] attempts)
    tool_calls: int = 0
    active_s: float = 0.0  # wall time of closed segments (a paused run does not spend wall time)
    segment_start: float | None = None
    last_ts: float | None = None

    def observe(self, payload: ev.Payload, ts: float) -> None:
        if isinstance(payload, ev.RunStarted | ev.RunContinued | ev.RunResumed):
            if self.segment_start is not None and self.last_ts is not None:
                # the process died: its segment ended with its last event, not at the resume
                self.active_s += self.last_ts - self.segment_start
            self.segment_start = ts
        elif isinstance(payload, ev.ModelResponse):
            self.steps += 1
            self.tokens += payload.usage.input_tokens + payload.usage.output_tokens
            self.usd += payload.cost_usd
        elif isinstance(payload, ev.ToolCall):
            self.tool_calls += 1
        elif isinstance(payload, ev.AttemptStarted):
            self.attempt_start = self.steps
        elif isinstance(payload, ev.RunPaused | ev.RunFinished) and self.segment_start is not None:
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
