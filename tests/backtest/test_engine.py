"""The backtest: the live run's meters and brakes over imported runs, and honest statistics."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.backtest.fixtures import mini_v1, write
from tether.backtest.engine import backtest_run, summarize
from tether.backtest.importers import import_file
from tether.backtest.report import sweep_html
from tether.backtest.sweep import pareto, split, sweep
from tether.policy import parse_policy
from tether.stats import bootstrap_share, wilson

OFF = ("[budget]\nmax_steps = 1000\nmax_tool_calls = 1000\n[brakes]\nrepeat_max = 1000\nrepeat_window = 1000\n"
       "max_consecutive_failures = 1000\nmax_steps_without_change = 1000\n")


def looping_run(tmp_path: Path, name: str, resolved: bool, loops: int, cost: float = 0.1):
    steps = [("ls", 0, "a.py", cost)] + [("cat a.py", 0, "same", cost)] * loops + [("echo done", 0, "", cost)]
    run = import_file(write(tmp_path / f"{name}.traj.json.gz", mini_v1(steps, instance=name)))
    run.resolved = resolved
    return run


def test_repeat_brake_stops_at_the_fourth_identical_command(tmp_path: Path):
    run = looping_run(tmp_path, "loop", resolved=False, loops=6)
    verdict = backtest_run(parse_policy(OFF.replace("repeat_max = 1000", "repeat_max = 3"), Path("p")), run)
    assert verdict.stopped and verdict.stop_step == 5 and verdict.rule == "brakes.repeat"
    assert verdict.cost_at_stop == pytest.approx(0.5)  # the fifth model call was made, its action not run
    assert verdict.saved_usd == pytest.approx(0.8 - 0.5)


def test_usd_budget_stops_before_the_call_once_spent(tmp_path: Path):
    run = looping_run(tmp_path, "costly", resolved=False, loops=8, cost=0.3)
    verdict = backtest_run(parse_policy(OFF.replace("[budget]\n", "[budget]\nmax_usd = 1.0\n"), Path("p")), run)
    assert verdict.rule == "budget.max_usd" and verdict.stop_step == 5
    assert verdict.cost_at_stop == pytest.approx(1.2)  # like a live run: a call's cost is known after it


def test_nothing_stops_under_a_permissive_policy(tmp_path: Path):
    verdict = backtest_run(parse_policy(OFF, Path("p")), looping_run(tmp_path, "r", resolved=True, loops=3))
    assert not verdict.stopped and verdict.saved_usd == 0


def test_summary_rates_and_money(tmp_path: Path):
    strict = parse_policy(OFF.replace("repeat_max = 1000", "repeat_max = 3"), Path("p"))
    runs = [looping_run(tmp_path, "f1", False, 6), looping_run(tmp_path, "f2", False, 1),
            looping_run(tmp_path, "g1", True, 6), looping_run(tmp_path, "g2", True, 0),
            looping_run(tmp_path, "u", None, 6)]
    summary = summarize([backtest_run(strict, run) for run in runs])
    assert (summary.unresolved_stopped, summary.unresolved, summary.false_stops, summary.resolved) == (1, 2, 1, 2)
    assert summary.unlabelled == 1
    assert summary.saved_usd == pytest.approx(0.3)
    assert summary.saved_share == pytest.approx(0.3 / (0.8 + 0.3))
    assert summary.resolved_usd_spent_before_kill == pytest.approx(0.5)
    assert summary.stops_by_rule == {"brakes.repeat": 3}


def test_wilson_interval_matches_known_values():
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def test_bootstrap_share_brackets_the_point_estimate():
    parts = [(1.0, 2.0), (0.0, 1.0), (0.5, 1.0), (2.0, 2.0)]
    low, high = bootstrap_share(parts)
    assert low <= 3.5 / 6 <= high and 0 <= low < high <= 1


def test_sweep_fits_on_one_half_and_reports_on_the_other(tmp_path: Path):
    runs = [looping_run(tmp_path, f"f{i}", False, 8) for i in range(12)]
    runs += [looping_run(tmp_path, f"g{i}", True, 1) for i in range(12)]
    result = sweep(runs, target_false_stop_rate=0.0, samples=50)
    assert result.fit_runs + result.test_runs == 24
    assert {split(run, 0.5) for run in runs} == {"fit", "test"}
    assert result.chosen is not None
    # looping failures are caught, resolved runs that never loop are not
    assert result.chosen.fit["false_stop_rate"] == 0.0 and result.chosen.fit["saved_share"] > 0.5
    assert result.chosen.test["false_stop_rate"] == 0.0 and result.chosen.test["saved_share"] > 0.5
    page = sweep_html(result, "sweep")
    assert "<svg" in page and "fixed by a hash" in page and "never saw" in page


def test_pareto_keeps_only_undominated_points():
    from tether.backtest.sweep import Point

    points = [Point((("a", 1),), {"false_stop_rate": fs, "saved_share": saved})
              for fs, saved in [(0.0, 0.1), (0.1, 0.05), (0.1, 0.3), (0.2, 0.3), (0.3, 0.5)]]
    assert [(p.fit["false_stop_rate"], p.fit["saved_share"]) for p in pareto(points)] == [
        (0.0, 0.1), (0.1, 0.3), (0.3, 0.5)]


def test_the_cost_profile_says_where_failed_and_resolved_runs_spend():
    from tether.backtest.engine import cost_profile
    from tether.backtest.trajectory import ImportedRun, ImportedStep

    def run(resolved: bool, steps: list[tuple[str, float]]) -> ImportedRun:
        return ImportedRun("test", f"{resolved}-{len(steps)}", "i", "a", "m", "t",
                           [ImportedStep(command, "", 0, cost_usd=cost) for command, cost in steps], resolved, None,
                           sum(cost for _, cost in steps))
    failed = run(False, [("ls", 1.0), ("sed -i s/a/b/ x", 1.0)] + [("pytest", 2.0)] * 8)
    resolved = run(True, [("ls", 1.0)] * 9 + [("sed -i s/a/b/ x", 1.0)])
    profile = cost_profile([failed, resolved])
    assert profile["failed"]["usd"] == 18.0 and profile["failed"]["share_by_tenth_of_steps"][0] == round(1 / 18, 4)
    assert profile["failed"]["share_after_last_edit"] == round(16 / 18, 4)
    assert profile["resolved"]["share_after_last_edit"] == 0.0
    assert profile["resolved"]["share_by_tenth_of_steps"] == [0.1] * 10
