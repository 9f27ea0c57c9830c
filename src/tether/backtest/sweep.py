"""Sweep brake and budget thresholds: the Pareto frontier of (USD saved on failed runs, share of
resolved runs stopped), fitted on one half of the runs and reported on the other.

Each detector is a separate fold, so the first stop of a combination is the earliest first stop
of its parts: every (detector, threshold) is run once per run, and combinations are cheap."""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

from tether.backtest.engine import Event, RunVerdict, first_stop, summarize
from tether.backtest.trajectory import ImportedRun
from tether.guard.brakes import Brakes
from tether.policy.schema import BrakesPolicy, BudgetPolicy

GRID: dict[str, list[float]] = {
    "budget.max_usd": [0.5, 1.0, 1.5, 2.0, 3.0],
    "budget.max_steps": [30, 50, 75, 100],
    "brakes.repeat_max": [2, 3, 5],
    "brakes.repeat_output_max": [1, 2, 3],
    "brakes.max_consecutive_failures": [3, 5, 8],
    "brakes.max_steps_without_change": [10, 15, 20, 30],
    "brakes.stale_test_cycles": [2, 3, 4],
    "brakes.burn_rate_factor": [2.0, 3.0, 5.0],
    "brakes.stale_failing_cycles": [2, 3, 5],
    "brakes.error_repeat_max": [3, 5, 8, 12],
    "brakes.max_steps_after_edit_without_change": [10, 15, 25],
    "brakes.seen_output_share": [0.3, 0.4, 0.5],
    "brakes.churn_max": [2, 3, 5],
}
_OFF_BUDGET = BudgetPolicy(max_usd=None, max_tokens=None, max_wall_s=None, max_steps=None, max_tool_calls=None)
_OFF_BRAKES = BrakesPolicy(repeat_max=None, max_consecutive_failures=None, max_steps_without_change=None,
                           max_turns_without_action=None)

Config = tuple[tuple[str, float], ...]  # sorted (knob, value) pairs


def split(run: ImportedRun, test_share: float) -> str:
    """A stable fit/test assignment from the run's identity, the same on every machine."""
    bucket = int(hashlib.sha256(run.run_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if bucket < test_share else "fit"


def single_stop(knob: str, value: float, events: list[Event]) -> tuple[int, float, str] | None:
    section, name = knob.split(".")
    budget = _OFF_BUDGET.model_copy(update={name: value}) if section == "budget" else _OFF_BUDGET
    brakes = _OFF_BRAKES.model_copy(update={name: value}) if section == "brakes" else _OFF_BRAKES
    stop = first_stop(events, budget, Brakes(brakes))
    return None if stop is None else (stop[0], stop[3], stop[1])


@dataclass
class Point:
    config: Config
    fit: dict[str, Any]
    test: dict[str, Any] = field(default_factory=dict)

    def policy_toml(self) -> str:
        sections: dict[str, list[str]] = {}
        for knob, value in self.config:
            section, name = knob.split(".")
            shown = int(value) if float(value).is_integer() and "usd" not in name and "factor" not in name else value
            sections.setdefault(section, []).append(f"{name} = {shown}")
        return "\n".join(f"[{section}]\n" + "\n".join(lines) for section, lines in sections.items()) or "# no brake"


@dataclass
class SweepResult:
    fit_runs: int
    test_runs: int
    configs: int
    points: list[Point]  # every configuration evaluated on the fit runs
    frontier: list[Point]  # Pareto-optimal on the fit runs, each also measured on the test runs
    chosen: Point | None
    target_false_stop_rate: float
    fit_on: str | None = None  # the collection fitted on (the others are the test runs); None: a hash split


def _verdicts(config: Config, runs: list[ImportedRun], stops: list[dict[tuple[str, float], Any]]) -> list[RunVerdict]:
    verdicts = []
    for run, by_knob in zip(runs, stops, strict=True):
        found = [by_knob[part] for part in config if by_knob[part] is not None]
        verdict = RunVerdict(run.run_id, run.source, run.instance_id, run.path, run.resolved, len(run.steps),
                             run.total_cost_usd, stopped=bool(found))
        if found:
            step, cost, rule = min(found, key=lambda item: item[0])
            verdict.stop_step, verdict.cost_at_stop, verdict.rule = step, cost, rule
        verdicts.append(verdict)
    return verdicts


def _metrics(verdicts: list[RunVerdict], intervals: bool) -> dict[str, Any]:
    summary = summarize(verdicts, intervals=intervals)
    return {"saved_share": summary.saved_share, "saved_usd": summary.saved_usd,
            "false_stop_rate": summary.false_stop_rate, "false_stops": summary.false_stops,
            "resolved": summary.resolved, "unresolved_stopped": summary.unresolved_stopped,
            "unresolved": summary.unresolved, "saved_share_ci": summary.saved_share_ci,
            "false_stop_ci": summary.false_stop_ci}


def candidate_configs(samples: int, seed: int) -> list[Config]:
    singles = [((knob, value),) for knob, values in GRID.items() for value in values]
    pairs = [tuple(sorted(a + b)) for a, b in itertools.combinations(singles, 2) if a[0][0] != b[0][0]]
    rng = random.Random(seed)
    mixed = set()
    for _ in range(samples):
        chosen = [(knob, rng.choice(values)) for knob, values in GRID.items() if rng.random() < 0.45]
        if len(chosen) > 2:
            mixed.add(tuple(sorted(chosen)))
    return [(), *singles, *pairs, *sorted(mixed)]


def pareto(points: list[Point]) -> list[Point]:
    """Points no other point beats on both saved share (higher) and false-stop rate (lower)."""
    ordered = sorted(points, key=lambda p: (p.fit["false_stop_rate"], -p.fit["saved_share"]))
    frontier: list[Point] = []
    best = -1.0
    for point in ordered:
        if point.fit["saved_share"] > best:
            frontier.append(point)
            best = point.fit["saved_share"]
    return frontier


def sweep(runs: list[ImportedRun], target_false_stop_rate: float = 0.05, test_share: float = 0.5,
          samples: int = 2000, seed: int = 7, fit_on: str | None = None,
          sides: list[str] | None = None) -> SweepResult:
    """Fit on a hash split of the runs, or (`fit_on`) on one collection and report on the others:
    a policy fitted to one agent, measured on agents it never saw; or on the `sides` given (one of
    "fit" and "test" per labelled run, in order: a split by time)."""
    labelled = [run for run in runs if run.resolved is not None]
    events = [run.events() for run in labelled]
    knobs = [(knob, value) for knob, values in GRID.items() for value in values]
    stops = [{knob: single_stop(*knob, run_events) for knob in knobs} for run_events in events]
    if sides is not None:
        if len(sides) != len(labelled):
            raise ValueError(f"{len(sides)} sides for {len(labelled)} labelled runs")
    elif fit_on is not None:
        collections = sorted({run.collection for run in labelled})
        if fit_on not in collections:
            raise ValueError(f"--fit-on {fit_on!r}: no labelled runs from it; the collections are "
                             f"{', '.join(collections)}")
        sides = ["fit" if run.collection == fit_on else "test" for run in labelled]
    else:
        sides = [split(run, test_share) for run in labelled]
    fit = [i for i, side in enumerate(sides) if side == "fit"]
    test = [i for i, side in enumerate(sides) if side == "test"]

    def on(indices: list[int], config: Config, intervals: bool) -> dict[str, Any]:
        return _metrics(_verdicts(config, [labelled[i] for i in indices], [stops[i] for i in indices]), intervals)

    points = [Point(config, on(fit, config, intervals=False)) for config in candidate_configs(samples, seed)]
    frontier = pareto(points)
    for point in frontier:
        point.fit = on(fit, point.config, intervals=True)
        point.test = on(test, point.config, intervals=True)
    eligible = [p for p in frontier if p.fit["false_stop_rate"] <= target_false_stop_rate]
    chosen = max(eligible, key=lambda p: p.fit["saved_share"]) if eligible else None
    return SweepResult(len(fit), len(test), len(points), points, frontier, chosen, target_false_stop_rate, fit_on)
