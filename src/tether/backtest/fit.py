"""Fit the stop score (`tether backtest --fit`): a logistic model of "this run will fail" over the
detectors' tallies after each step, and the threshold that saves the most money on failed runs
while stopping at most the target share of resolved ones. Fitted on one set of runs, reported on
another; stored as policy data ([brakes.score]) that live runs read with the same fold.

Each run counts once (its steps share its weight) and both outcomes count alike (a set with few
resolved runs would otherwise teach the model that every run fails). Newton's method on a dozen
standardised features, in plain Python: the data is a few thousand rows."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tether.backtest.engine import Event, RunVerdict, summarize
from tether.backtest.trajectory import ImportedRun
from tether.guard.brakes import Brakes
from tether.ledger import events as ev
from tether.ledger.meters import Meters
from tether.policy.schema import SCORE_FEATURES, BrakesPolicy, StopScore
from tether.stats import sigmoid

SAMPLES_PER_RUN = 20
THRESHOLDS = [round(0.5 + 0.01 * i, 2) for i in range(50)]
MIN_STEPS = 5
L2 = 1.0
_COUNT_ONLY = BrakesPolicy(repeat_max=None, max_consecutive_failures=None, max_steps_without_change=None,
                           max_turns_without_action=None)

Series = list[tuple[list[float], float, int]]  # after each tool step: (features, USD so far, step)


def series(events: list[Event], names: tuple[str, ...] = SCORE_FEATURES) -> Series:
    """The features after each tool step of a run, with what it had spent by then."""
    brakes = Brakes(_COUNT_ONLY, counting=True)
    meters = Meters()
    out: Series = []
    step = 0
    for payload, ts in events:
        meters.observe(payload, ts)
        brakes.observe(payload)
        if isinstance(payload, ev.ModelResponse):
            step = payload.step
        elif isinstance(payload, ev.ToolResult):
            features = brakes.features()
            out.append(([features[name] for name in names], meters.usd, step))
    return out


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (the matrix is small and positive definite)."""
    size = len(vector)
    rows = [[*row, vector[i]] for i, row in enumerate(matrix)]
    for col in range(size):
        pivot = max(range(col, size), key=lambda r: abs(rows[r][col]))
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(size):
            if r != col and rows[col][col] != 0:
                factor = rows[r][col] / rows[col][col]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col], strict=True)]
    return [rows[i][size] / rows[i][i] if rows[i][i] else 0.0 for i in range(size)]


def logistic(rows: list[list[float]], labels: list[int], weights: list[float], iterations: int = 30) -> list[float]:
    """Coefficients (bias first) of an L2-regularised, weighted logistic regression, by Newton's method."""
    size = len(rows[0]) + 1
    beta = [0.0] * size
    for _ in range(iterations):
        gradient = [L2 * b for b in beta]
        gradient[0] = 0.0  # the bias is not shrunk
        hessian = [[(L2 if i == j and i else 0.0) for j in range(size)] for i in range(size)]
        for row, label, weight in zip(rows, labels, weights, strict=True):
            x = [1.0, *row]
            z = sum(b * v for b, v in zip(beta, x, strict=True))
            p = sigmoid(z)
            for i in range(size):
                gradient[i] += weight * (p - label) * x[i]
                scale = weight * p * (1 - p) * x[i]
                hessian_row = hessian[i]
                for j in range(i, size):
                    hessian_row[j] += scale * x[j]
        for i in range(size):
            for j in range(i):
                hessian[i][j] = hessian[j][i]
        step = _solve(hessian, gradient)
        beta = [b - s for b, s in zip(beta, step, strict=True)]
        if max(abs(s) for s in step) < 1e-6:
            break
    return beta


@dataclass
class FitResult:
    score: StopScore
    fit: dict[str, Any]
    test: dict[str, Any]
    fit_runs: int
    test_runs: int
    carried_by: list[tuple[str, float]]  # features by the weight of their standardised effect

    def policy_toml(self) -> str:
        weights = ", ".join(f"{name} = {value:.4f}" for name, value in self.score.weights.items())
        return (f"[brakes.score]\nbias = {self.score.bias:.4f}\nthreshold = {self.score.threshold}\n"
                f"min_steps = {self.score.min_steps}\nweights = {{ {weights} }}")


def fit_score(runs: list[ImportedRun], fit_sides: list[str], target_false_stop_rate: float,
              names: tuple[str, ...] = SCORE_FEATURES) -> FitResult:
    """Fit on the runs marked "fit", choose the threshold there, report on those marked "test"."""
    labelled = [(run, side) for run, side in zip(runs, fit_sides, strict=True) if run.resolved is not None]
    every = [(run, side, series(run.events(), names)) for run, side in labelled]
    fit = [(run, steps) for run, side, steps in every if side == "fit" and steps]
    test = [(run, steps) for run, side, steps in every if side == "test"]
    if not fit or len({run.resolved for run, _ in fit}) < 2:
        raise ValueError("the fit runs need both resolved and failed runs to fit a score")
    rows, labels, weights = [], [], []
    failed_share = sum(run.resolved is False for run, _ in fit) / len(fit)
    for run, steps in fit:
        picked = steps[MIN_STEPS - 1:] or steps[-1:]
        picked = [picked[round(i * (len(picked) - 1) / max(1, SAMPLES_PER_RUN - 1))]
                  for i in range(min(SAMPLES_PER_RUN, len(picked)))]
        balance = 0.5 / failed_share if run.resolved is False else 0.5 / (1 - failed_share)
        for features, _, _ in picked:
            rows.append(features)
            labels.append(0 if run.resolved else 1)
            weights.append(balance / len(picked))
    means = [sum(column) / len(rows) for column in zip(*rows, strict=True)]
    spreads = [math.sqrt(sum((v - m) ** 2 for v in column) / len(rows)) or 1.0
               for column, m in zip(zip(*rows, strict=True), means, strict=True)]
    standard = [[(v - m) / d for v, m, d in zip(row, means, spreads, strict=True)] for row in rows]
    beta = logistic(standard, labels, weights)
    coefficients = [b / d for b, d in zip(beta[1:], spreads, strict=True)]
    bias = beta[0] - sum(b * m / d for b, m, d in zip(beta[1:], means, spreads, strict=True))
    carried = sorted(zip(names, beta[1:], strict=True), key=lambda kv: -abs(kv[1]))

    def probabilities(steps: Series) -> list[float]:
        return [sigmoid(bias + sum(c * v for c, v in zip(coefficients, features, strict=True)))
                for features, _, _ in steps]
    scored = {id(steps): probabilities(steps) for _, steps in [*fit, *test]}

    def verdicts(runs_steps: list[tuple[ImportedRun, Series]], threshold: float) -> list[RunVerdict]:
        out = []
        for run, steps in runs_steps:
            verdict = RunVerdict(run.run_id, run.source, run.instance_id, run.path, run.resolved, len(run.steps),
                                 run.total_cost_usd, stopped=False, label_source=run.label_source)
            for index, probability in enumerate(scored[id(steps)]):
                if index + 1 >= MIN_STEPS and probability >= threshold:
                    _, usd, step = steps[index]
                    verdict.stopped, verdict.stop_step, verdict.cost_at_stop = True, step, usd
                    verdict.rule = "brakes.score"
                    break
            out.append(verdict)
        return out

    def metrics(runs_steps: list[tuple[ImportedRun, Series]], threshold: float) -> dict[str, Any]:
        summary = summarize(verdicts(runs_steps, threshold))
        return {"saved_share": summary.saved_share, "saved_share_ci": summary.saved_share_ci,
                "false_stop_rate": summary.false_stop_rate, "false_stop_ci": summary.false_stop_ci,
                "false_stops": summary.false_stops, "resolved": summary.resolved,
                "unresolved_stopped": summary.unresolved_stopped, "unresolved": summary.unresolved}

    eligible = [(t, m) for t in THRESHOLDS if (m := metrics(fit, t))["false_stop_rate"] <= target_false_stop_rate]
    threshold, fit_metrics = max(eligible, key=lambda tm: tm[1]["saved_share"]) if eligible else \
        (0.99, metrics(fit, 0.99))
    score = StopScore(bias=round(bias, 6), weights={n: round(c, 6) for n, c in zip(names, coefficients, strict=True)},
                      threshold=threshold, min_steps=MIN_STEPS)
    return FitResult(score, fit_metrics, metrics(test, threshold) if test else {}, len(fit), len(test),
                     [(name, round(value, 3)) for name, value in carried])
