"""Run a policy's budgets and brakes over recorded runs (the same meters and brake code as live
runs) and measure what they would have stopped, saved and killed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from tether.backtest.trajectory import ImportedRun, looks_like_edit
from tether.guard.brakes import Brakes
from tether.guard.budgets import check_model_call, check_tool_call
from tether.ledger import events as ev
from tether.ledger.meters import Meters
from tether.policy.schema import BudgetPolicy, Policy
from tether.stats import bootstrap_share, wilson

Event = tuple[ev.Payload, float]


@dataclass
class RunVerdict:
    run_id: str
    source: str
    instance_id: str
    path: str
    resolved: bool | None
    steps: int
    cost_usd: float
    stopped: bool
    stop_step: int | None = None
    rule: str | None = None
    reason: str | None = None
    steps_at_stop: int | None = None
    cost_at_stop: float | None = None
    label_source: str | None = None

    @property
    def saved_usd(self) -> float:
        return self.cost_usd - self.cost_at_stop if self.stopped and self.cost_at_stop is not None else 0.0


def first_stop(events: Iterable[Event], budget: BudgetPolicy,
               brakes: Brakes) -> tuple[int, str, str, float, int] | None:
    """(step, rule, reason, USD spent, steps done) at the first point the guard would stop, or None.

    A model call is checked before it is made, with its prompt tokens; like a live run, a backtest
    learns a call's cost only after the call, so a USD budget can be passed by one step."""
    meters = Meters()
    step = 0
    for payload, ts in events:
        if isinstance(payload, ev.ModelResponse):
            step = payload.step
            decision = check_model_call(meters, budget, payload.usage.input_tokens, 0.0, ts)
            if decision is not None:
                return step, decision.rule, decision.reason, meters.usd, meters.steps
        meters.observe(payload, ts)
        if isinstance(payload, ev.ToolCall):
            decision = check_tool_call(meters, budget, ts)
            if decision is not None:
                return step, decision.rule, decision.reason, meters.usd, meters.steps
        hit = brakes.observe(payload)
        if hit is not None:
            return step, f"brakes.{hit.detector}", hit.reason, meters.usd, meters.steps
    return None


def backtest_run(policy: Policy, run: ImportedRun, events: list[Event] | None = None) -> RunVerdict:
    verdict = RunVerdict(run.run_id, run.source, run.instance_id, run.path, run.resolved, len(run.steps),
                         run.total_cost_usd, stopped=False, label_source=run.label_source)
    # What the policy would stop, enforced: a backtest is the what-if of its shadow mode.
    enforced = policy.brakes.model_copy(update={"mode": "enforce", "shadow": []})
    stop = first_stop(events if events is not None else run.events(), policy.budget, Brakes(enforced))
    if stop is not None:
        verdict.stopped = True
        verdict.stop_step, verdict.rule, verdict.reason, verdict.cost_at_stop, verdict.steps_at_stop = stop
    return verdict


@dataclass
class Summary:
    runs: int
    unlabelled: int
    unresolved: int
    unresolved_stopped: int
    unresolved_stopped_share: float
    unresolved_stopped_ci: tuple[float, float]
    unresolved_usd: float
    saved_usd: float
    saved_share: float
    saved_share_ci: tuple[float, float]
    resolved: int
    false_stops: int
    false_stop_rate: float
    false_stop_ci: tuple[float, float]
    resolved_usd_spent_before_kill: float
    resolved_usd_of_killed: float
    stops_by_rule: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(verdicts: list[RunVerdict], intervals: bool = True) -> Summary:
    failed = [v for v in verdicts if v.resolved is False]
    good = [v for v in verdicts if v.resolved is True]
    failed_stopped = sum(v.stopped for v in failed)
    killed = [v for v in good if v.stopped]
    failed_usd = sum(v.cost_usd for v in failed)
    saved = sum(v.saved_usd for v in failed)
    rules: dict[str, int] = {}
    for verdict in verdicts:
        if verdict.stopped and verdict.rule:
            rules[verdict.rule] = rules.get(verdict.rule, 0) + 1
    return Summary(
        runs=len(verdicts), unlabelled=sum(v.resolved is None for v in verdicts),
        unresolved=len(failed), unresolved_stopped=failed_stopped,
        unresolved_stopped_share=failed_stopped / len(failed) if failed else 0.0,
        unresolved_stopped_ci=wilson(failed_stopped, len(failed)),
        unresolved_usd=failed_usd, saved_usd=saved, saved_share=saved / failed_usd if failed_usd else 0.0,
        saved_share_ci=bootstrap_share([(v.saved_usd, v.cost_usd) for v in failed]) if intervals else (0.0, 0.0),
        resolved=len(good), false_stops=len(killed), false_stop_rate=len(killed) / len(good) if good else 0.0,
        false_stop_ci=wilson(len(killed), len(good)),
        resolved_usd_spent_before_kill=sum(v.cost_at_stop or 0.0 for v in killed),
        resolved_usd_of_killed=sum(v.cost_usd for v in killed),
        stops_by_rule=dict(sorted(rules.items(), key=lambda item: -item[1])),
    )


def cost_profile(runs: list[ImportedRun], buckets: int = 10) -> dict[str, Any]:
    """Where the money goes in failed and in resolved runs: the share of their USD spent in each
    tenth of a run's steps, and the share spent after the run's last edit (in a failed run, money
    a brake could have saved without losing any change)."""
    profile: dict[str, Any] = {}
    for name, outcome in (("failed", False), ("resolved", True)):
        spent = [0.0] * buckets
        after_last_edit = 0.0
        for run in (r for r in runs if r.resolved is outcome and r.steps):
            count = len(run.steps)
            last_edit = max((i for i, step in enumerate(run.steps) if looks_like_edit(step.command)), default=-1)
            for index, step in enumerate(run.steps):
                spent[min(buckets - 1, index * buckets // count)] += step.cost_usd
                if index > last_edit:
                    after_last_edit += step.cost_usd
        total = sum(spent)
        profile[name] = {"usd": round(total, 4),
                         "share_by_tenth_of_steps": [round(x / total, 4) if total else 0.0 for x in spent],
                         "share_after_last_edit": round(after_last_edit / total, 4) if total else 0.0}
    return profile
