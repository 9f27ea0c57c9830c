"""Brakes calibrated on an agent's own runs: the store's finished runs of one agent (Tether's own,
external agents' through the gateway, and imported trajectories alike), labelled by their outcomes,
split by time (fit on the older half, measured on the newer), the detectors' thresholds and the
stop score fitted as `tether backtest --sweep` and `--fit` fit them on files. A policy is proposed
only when the newer half has enough resolved runs to bound its false stops."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tether.backtest.engine import Event
from tether.backtest.fit import FitResult, fit_score
from tether.backtest.sweep import Point, SweepResult, sweep
from tether.errors import TetherError
from tether.ledger import Ledger
from tether.ledger import events as ev
from tether.ledger.queries import finished_of
from tether.ledger.store import NOT_RUNS


class CalibrationRefused(TetherError):
    exit_code = 1


@dataclass
class RecordedRun:
    """A finished run of the store, as the sweep and the stop score read an imported one."""
    run_id: str
    agent: str
    started_at: float
    instance_id: str
    resolved: bool | None
    total_cost_usd: float
    recorded: list[Event]
    label: str  # what the label was read from
    source: str = "store"
    path: str = ""
    collection: str = ""
    label_source: str | None = None
    steps: list[int] = field(default_factory=list)

    def events(self) -> list[Event]:
        return self.recorded


def agent_of(started: ev.RunStarted) -> str:
    """The agent a run is of: an imported trajectory's own, an external agent's name, else Tether's
    architecture with its model."""
    if started.imported:
        return started.agent or started.source
    architecture = started.architecture or "harness"
    if architecture.startswith("agent:"):
        return architecture.removeprefix("agent:")
    model = started.model or ""
    return f"tether {architecture} {'scripted' if model.startswith('scripted:') else model}".strip()


def label_of(started: ev.RunStarted, events: list[Event]) -> tuple[bool | None, str]:
    """Whether the run did its task, and from what: an outcome reported after it (merged, or
    rejected, reverted, a defect), else its own end (its required checks passed, or failed); an
    imported run's label. A run a brake, a budget or a person stopped says nothing (censored)."""
    finished = next((p for p, _ in reversed(events) if isinstance(p, ev.RunFinished)), None)
    if started.imported:
        return (finished.resolved if finished is not None else None), "the trajectory's label"
    outcome = next((p for p, _ in reversed(events) if isinstance(p, ev.OutcomeReported)), None)
    if outcome is not None:
        return outcome.outcome == "merged", f"outcome {outcome.outcome}"
    if finished is None:
        return None, "not finished"
    return {"succeeded": (True, "its required checks passed"),
            "failed": (False, "its required checks failed")}.get(str(finished.status), (None, "stopped"))


def recorded_runs(ledger: Ledger, since: float | None = None) -> list[RecordedRun]:
    """Every finished run of the store (since `since`), labelled, oldest first."""
    runs: list[RecordedRun] = []
    for row in ledger.list_runs(limit=None, since=since):
        if row.source in NOT_RUNS or row.status in ("running", "awaiting_approval", "waiting"):
            continue
        stored = ledger.events(row.id)
        if not stored or not isinstance(stored[0].data, ev.RunStarted) or finished_of(stored) is None:
            continue
        started = stored[0].data
        events = [(e.data, e.ts) for e in stored]
        resolved, label = label_of(started, events)
        cost = sum(p.cost_usd for p, _ in events if isinstance(p, ev.ModelResponse))
        steps = [p.step for p, _ in events if isinstance(p, ev.ModelResponse)]
        runs.append(RecordedRun(row.id, agent_of(started), stored[0].ts, started.instance_id or row.id, resolved,
                                cost, events, label, path=started.path or "", steps=steps))
    return sorted(runs, key=lambda run: (run.started_at, run.instance_id))


def by_time(runs: list[RecordedRun]) -> list[str]:
    """"fit" for the older half of the labelled runs, "test" for the newer; by instance id where
    the runs carry no times of their own (an imported set stored at once)."""
    labelled = [run for run in runs if run.resolved is not None]
    spread = max((r.started_at for r in labelled), default=0) - min((r.started_at for r in labelled), default=0)
    ordered = sorted(range(len(labelled)), key=lambda i: (labelled[i].started_at if spread > 60 else 0,
                                                         labelled[i].instance_id))
    sides = ["test"] * len(labelled)
    for rank, index in enumerate(ordered):
        if rank < len(labelled) // 2:
            sides[index] = "fit"
    return sides


@dataclass
class Calibration:
    agent: str
    runs: int
    labelled: int
    resolved: dict[str, int]  # fit / test
    target_false_stop_rate: float
    thresholds: SweepResult
    score: FitResult | None
    chosen: str  # "thresholds" or "score"

    @property
    def proposal(self) -> dict[str, Any]:
        """The chosen policy's TOML and what it did on the newer runs."""
        if self.chosen == "score" and self.score is not None:
            return {"policy": self.score.policy_toml(), "fit": self.score.fit, "test": self.score.test}
        point: Point | None = self.thresholds.chosen
        assert point is not None
        return {"policy": point.policy_toml(), "fit": point.fit, "test": point.test}

    def as_dict(self) -> dict[str, Any]:
        return {"agent": self.agent, "runs": self.runs, "labelled": self.labelled, "resolved": self.resolved,
                "target_false_stop_rate": self.target_false_stop_rate, "chosen": self.chosen, **self.proposal}


def calibrate(runs: list[RecordedRun], agent: str, target_false_stop_rate: float = 0.02) -> Calibration:
    """Fit the detectors' thresholds and the stop score on the agent's older runs; the proposal is
    whichever saves more there within the target, measured on the newer runs."""
    mine = [run for run in runs if run.agent == agent]
    if not mine:
        known = sorted({run.agent for run in runs})
        raise CalibrationRefused(f"no finished runs of {agent!r} in the store; its agents are "
                                 f"{', '.join(known) or 'none'}")
    labelled = [run for run in mine if run.resolved is not None]
    sides = by_time(mine)
    resolved = {side: sum(run.resolved is True for run, s in zip(labelled, sides, strict=True) if s == side)
                for side in ("fit", "test")}
    failed = sum(run.resolved is False for run in labelled)
    needed = math.ceil(1 / target_false_stop_rate)
    if min(resolved.values()) < needed or failed < 2:
        raise CalibrationRefused(
            f"{agent} has {resolved['fit']} resolved runs in its older half and {resolved['test']} in its newer "
            f"({failed} failed in all, of {len(mine)} finished): at least {needed} resolved runs in each half are "
            f"needed to bound false stops at {target_false_stop_rate:.0%}. Nothing is proposed; run more, or "
            "import this agent's earlier trajectories (tether import).")
    thresholds = sweep(labelled, target_false_stop_rate, sides=sides)  # type: ignore[arg-type]
    try:
        score: FitResult | None = fit_score(labelled, sides, target_false_stop_rate)  # type: ignore[arg-type]
    except ValueError:
        score = None
    by_thresholds = thresholds.chosen.fit["saved_share"] if thresholds.chosen is not None else -1.0
    by_score = score.fit["saved_share"] if score is not None and \
        score.fit["false_stop_rate"] <= target_false_stop_rate else -1.0
    if max(by_thresholds, by_score) < 0:
        raise CalibrationRefused(f"no brake keeps {agent}'s older runs within {target_false_stop_rate:.0%} false "
                                 "stops; nothing is proposed")
    return Calibration(agent, len(mine), len(labelled), resolved, target_false_stop_rate, thresholds, score,
                       "score" if by_score > by_thresholds else "thresholds")
