"""`tether brakes calibrate`: the brakes fitted on one agent's own stored runs (live or imported),
labelled by their outcomes, fitted on the older half and measured on the newer; refused with too
few resolved runs; rolled out behind a canary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CHECK, FIX, bash, call, run_scripted
from tether.backtest.calibrate import CalibrationRefused, by_time, calibrate, label_of, recorded_runs
from tether.ledger import Ledger
from tether.ledger import events as ev

TETHER = [sys.executable, "-m", "tether"]
SHARED = Path(__file__).parents[3] / "shared" / "data" / "trajectories"
FIXED = [{**call("write_file", path="raindrops.py", content=FIX), "cost_usd": 0.01},
         {**call("submit", summary="fixed"), "cost_usd": 0.01}]
LOOPING = [*[{**bash("cat raindrops.py"), "cost_usd": 0.01} for _ in range(6)],
           {**call("submit", summary="gave up"), "cost_usd": 0.01}]


def fleet(ledger: Ledger, repo: Path, tmp_path: Path, good: int, bad: int) -> None:
    for index in range(max(good, bad)):
        if index < good:
            assert run_scripted(ledger, repo, tmp_path, FIXED, CHECK)["status"] == "succeeded"
        if index < bad:
            assert run_scripted(ledger, repo, tmp_path, LOOPING, CHECK)["status"] == "failed"


def test_a_policy_fitted_on_the_older_runs_is_measured_on_the_newer(ledger: Ledger, repo: Path, tmp_path: Path):
    fleet(ledger, repo, tmp_path, good=10, bad=10)
    runs = recorded_runs(ledger)
    assert {run.agent for run in runs} == {"tether harness scripted"}
    assert by_time(runs) == ["fit"] * 10 + ["test"] * 10  # oldest first
    result = calibrate(runs, "tether harness scripted", target_false_stop_rate=0.2)
    proposal = result.proposal
    assert result.resolved == {"fit": 5, "test": 5}
    assert proposal["test"]["false_stops"] == 0 and proposal["test"]["unresolved_stopped"] == 5
    assert proposal["test"]["saved_share"] > 0.2 and "[brakes]" in proposal["policy"]


def test_too_few_resolved_runs_to_bound_the_false_stops_is_a_refusal(ledger: Ledger, repo: Path, tmp_path: Path):
    fleet(ledger, repo, tmp_path, good=3, bad=3)
    with pytest.raises(CalibrationRefused, match="at least 50 resolved runs in each half"):
        calibrate(recorded_runs(ledger), "tether harness scripted", target_false_stop_rate=0.02)
    with pytest.raises(CalibrationRefused, match="no finished runs of 'codex'"):
        calibrate(recorded_runs(ledger), "codex")


@pytest.mark.parametrize("finish, outcome, label", [
    ("succeeded", None, True), ("failed", None, False), ("stopped", None, None),
    ("succeeded", "reverted", False), ("failed", "merged", True), ("succeeded", "defect", False)])
def test_labels_come_from_outcomes_and_a_stopped_run_says_nothing(finish, outcome, label):
    started = ev.RunStarted(task="t")
    events = [(started, 0.0), (ev.RunFinished(status=finish, reason="r"), 1.0)]
    if outcome:
        events.append((ev.OutcomeReported(outcome=outcome, by="p"), 2.0))
    assert label_of(started, events)[0] is label


def test_the_cli_proposes_and_starts_a_canary_with_the_proposal(repo: Path, tmp_path: Path):
    ledger = Ledger(f"sqlite:///{repo / '.tether' / 'tether.db'}")
    fleet(ledger, repo, tmp_path, good=10, bad=10)
    ledger.close()
    done = subprocess.run([*TETHER, "brakes", "calibrate", "--target-false-stops", "0.2", "--canary", "--json"],
                          cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["canary"] and result["test"]["false_stops"] == 0
    candidate = repo / ".tether" / "calibrated-tether-harness-scripted.toml"
    assert "[brakes]" in candidate.read_text()
    status = subprocess.run([*TETHER, "canary", "status", "--json"], cwd=repo, capture_output=True, text=True)
    assert result["canary"] in status.stdout
    refused = subprocess.run([*TETHER, "brakes", "calibrate"], cwd=repo, capture_output=True, text=True)
    assert refused.returncode == 1 and "at least 50 resolved runs" in refused.stderr


@pytest.mark.slow
def test_on_an_imported_real_set_the_older_half_fits_and_the_newer_measures(tmp_path: Path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'store.db'}")
    from tether.backtest.importers import load_runs
    from tether.backtest.store import store_run

    for run in load_runs([SHARED / "mini-swe-agent__gemini-3-pro__swebench-verified"]):
        store_run(ledger, run)
    result = calibrate(recorded_runs(ledger), "mini-swe-agent 1.15.0", 0.02)
    ledger.close()
    test = result.proposal["test"]
    assert result.labelled == 500 and result.resolved["test"] > 150
    assert test["false_stop_ci"][0] <= 0.02 and 0 <= test["saved_share"] <= 1
