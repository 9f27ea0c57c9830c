"""The stop score: fitted by `tether backtest --fit` on one set of runs, reported on another, stored as
[brakes.score] and fired by the same fold in a live run, with the features that pushed it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.backtest.fixtures import mini_v1, write
from tests.conftest import typed
from tether.backtest.fit import logistic
from tether.guard.brakes import Brakes
from tether.policy import parse_policy
from tether.policy.schema import SCORE_FEATURES, StopScore

ERROR = 'Traceback (most recent call last):\n  File "/w/app.py", line 3\nKeyError: \'{n}\''


def agent_runs(root: Path, name: str, count: int) -> Path:
    """Failed runs hit the same error again and again; resolved ones fix it after a few tries."""
    rows = ["run,instance_id,resolved,traj_file"]
    for number in range(count):
        failed = number % 2 == 0
        instance = f"{name}-{number}"
        tries = 14 if failed else 3
        steps = [("ls", 0, "app.py tests", 0.02)]
        for attempt in range(tries):
            steps += [(f"sed -i s/{attempt}/{attempt + 1}/ app.py", 0, "", 0.02),
                      ("python app.py", 1, ERROR.format(n=attempt), 0.02)]
        if not failed:
            steps += [("python app.py", 0, "ok", 0.02)]
        write(root / name / f"{instance}.traj.json.gz", mini_v1(steps, instance=instance))
        rows.append(f"r,{instance},{not failed},{instance}.traj.json.gz")
    (root / name / "index.csv").write_text("\n".join(rows) + "\n")
    return root / name


def test_logistic_regression_recovers_a_separating_direction():
    rows = [[x / 10, (x % 3) / 3] for x in range(40)]
    labels = [1 if x >= 20 else 0 for x in range(40)]
    bias, first, second = logistic(rows, labels, [1.0] * 40)
    assert first > 1 and abs(second) < abs(first) and bias < 0


def test_a_score_fitted_on_one_agent_is_reported_on_another_and_fires_live_with_its_reasons(tmp_path: Path):
    fit_on = agent_runs(tmp_path, "agent-a", 12)
    other = agent_runs(tmp_path, "agent-b", 8)
    done = subprocess.run([sys.executable, "-m", "tether", "backtest", str(fit_on), str(other), "--fit",
                           "--fit-on", "agent-a", "--max-false-stops", "0", "--json"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["fit_runs"], result["test_runs"]) == (12, 8)
    assert result["fit"]["false_stops"] == 0 and result["fit"]["saved_share"] > 0.3
    assert result["test"]["false_stops"] == 0 and result["test"]["unresolved_stopped"] == 4
    policy = parse_policy(result["policy"], Path("fitted.toml"))
    brakes = Brakes(policy.brakes)
    hit = None
    for n in range(30):  # a live run going the way the failed ones went: edit, run, the same error
        for kind, command, ok, observation in (("edit", f"sed -i s/{n}/x/ app.py", True, ""),
                                               ("run", "python app.py", False, ERROR.format(n=n))):
            brakes.observe(typed("model_response", {"cost_usd": 0.02}))
            brakes.observe(typed("tool_call", {"call_id": f"{kind}{n}", "name": "bash",
                                               "arguments": {"command": command}}))
            hit = brakes.observe(typed("tool_result", {"call_id": f"{kind}{n}", "ok": ok, "tree": f"t{n}",
                                                       "observation": observation}))
            if hit:
                break
        if hit:
            break
    assert hit is not None and hit.detector == "score" and hit.evidence["score"] >= policy.brakes.score.threshold
    assert hit.evidence["contributions"] and set(hit.evidence["features"]) <= set(SCORE_FEATURES)


def test_a_score_naming_an_unknown_feature_is_refused():
    with pytest.raises(ValidationError, match="unknown feature"):
        StopScore(weights={"vibes": 1.0})


def test_every_feature_the_score_may_name_is_one_the_brakes_compute():
    brakes = Brakes(parse_policy("[brakes]\n", Path("p.toml")).brakes, counting=True)
    assert tuple(brakes.features()) == SCORE_FEATURES


def test_fitting_needs_both_outcomes(tmp_path: Path):
    data = agent_runs(tmp_path, "agent-a", 4)
    (data / "index.csv").write_text((data / "index.csv").read_text().replace(",True,", ",False,"))
    done = subprocess.run([sys.executable, "-m", "tether", "backtest", str(data), "--fit", "--fit-on", "agent-a"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "both resolved and failed runs" in done.stderr
