"""Shadow mode: a brake or a budget that would fire records `brake_shadowed` (once, with its
evidence) and the run goes on; `tether runs` and `show` say what would have stopped it and when. The
fleet's limits and the kill switch are never shadowed; a backtest measures the policy enforced."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CHECK, FIX, bash, call, payloads, run_scripted, script
from tether.ledger import Ledger
from tether.policy import PolicyError, parse_policy

LOOP = [bash("ls"), bash("ls"), bash("ls"), bash("ls"), call("write_file", path="raindrops.py", content=FIX),
        call("submit", summary="fixed")]
BRAKE = "[brakes]\nrepeat_output_max = 2\n"


@pytest.mark.parametrize("shadow", ['mode = "shadow"\n', 'shadow = ["repeat_output"]\n'], ids=["all", "named"])
def test_a_shadowed_brake_is_recorded_and_the_run_succeeds(ledger: Ledger, repo: Path, tmp_path: Path, shadow: str):
    enforced = run_scripted(ledger, repo, tmp_path, LOOP, CHECK + BRAKE)
    assert enforced["status"] == "stopped" and enforced["brakes"][0]["detector"] == "repeat_output"  # the control
    shadowed = run_scripted(ledger, repo, tmp_path, LOOP, CHECK + BRAKE + shadow)
    assert shadowed["status"] == "succeeded"
    (event,) = payloads(ledger, shadowed["run_id"], "brake_shadowed")  # once, though it kept firing
    assert event["detector"] == "repeat_output" and event["step"] == 3 and event["evidence"]["count"] == 3
    assert shadowed["shadowed"] == [{"step": 3, "detector": "repeat_output", "reason": event["reason"]}]
    assert not shadowed["brakes"]


def test_a_shadowed_budget_goes_on_and_an_enforced_one_behind_it_still_stops(ledger: Ledger, repo: Path,
                                                                            tmp_path: Path):
    policy = CHECK + '[budget]\nmax_steps = 2\nmax_tool_calls = 4\n[brakes]\nshadow = ["budget.max_steps"]\n'
    summary = run_scripted(ledger, repo, tmp_path, LOOP, policy)
    assert summary["status"] == "stopped" and summary["denials"][-1]["rule"] == "budget.max_tool_calls"
    assert [s["detector"] for s in summary["shadowed"]] == ["budget.max_steps"]
    whole = run_scripted(ledger, repo, tmp_path, LOOP, CHECK + '[budget]\nmax_steps = 2\nmode = "shadow"\n')
    assert whole["status"] == "succeeded" and [s["step"] for s in whole["shadowed"]] == [2]


def test_runs_and_show_say_what_would_have_stopped_the_run(repo: Path, tmp_path: Path):
    (repo / "tether.toml").write_text(CHECK + BRAKE + 'mode = "shadow"\n')
    tether = [sys.executable, "-m", "tether"]
    ran = subprocess.run([*tether, "run", "x", "--model", script(tmp_path / "t.json", LOOP), "--json"], cwd=repo,
                         capture_output=True, text=True)
    run_id = json.loads(ran.stdout)["run_id"]
    listed = subprocess.run([*tether, "runs"], cwd=repo, capture_output=True, text=True, env={"COLUMNS": "200"})
    assert "repeat_output @ step 3" in listed.stdout
    shown = subprocess.run([*tether, "show", run_id], cwd=repo, capture_output=True, text=True).stdout
    assert "would have stopped" in shown and "at step 3: repeat_output" in " ".join(shown.split())


def test_unknown_brakes_cannot_be_shadowed():
    with pytest.raises(PolicyError, match=r"unknown brake.*no_such"):
        parse_policy('[brakes]\nshadow = ["no_such"]\n', Path("tether.toml"))
