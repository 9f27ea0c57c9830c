"""The backtest on the two shared trajectory sets gives the figures published in docs/backtest/
(measured before the event vocabulary was typed): typed events change no verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tether.backtest.engine import backtest_run, summarize
from tether.backtest.importers import load_runs
from tether.policy import load_policy

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs" / "backtest"
SETS = ROOT.parent / "shared" / "data" / "trajectories"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not SETS.is_dir(), reason=f"no shared trajectories at {SETS}")]


@pytest.mark.parametrize("name", ["mini-swe-agent__gemini-3-pro__swebench-verified",
                                  "swe-agent__java-verified__multi-swe-bench"])
def test_default_policy_figures_are_unchanged(name: str):
    published = json.loads((DOCS / f"default-{name}.json").read_text())
    policy = load_policy(DOCS / "default-policy.toml")
    verdicts = [backtest_run(policy, run) for run in load_runs([SETS / name])]
    assert json.loads(json.dumps(summarize(verdicts).as_dict())) == published["summary"]
    assert {v.instance_id: (v.stopped, v.rule, v.stop_step) for v in verdicts} == {
        v["instance_id"]: (v["stopped"], v["rule"], v["stop_step"]) for v in published["runs"]}


@pytest.mark.parametrize("name", ["mini-swe-agent__gemini-3-pro__swebench-verified",
                                  "swe-agent__java-verified__multi-swe-bench"])
def test_the_defaults_stop_at_most_two_percent_of_each_sets_resolved_runs(name: str):
    from tether.policy.schema import Policy

    verdicts = [backtest_run(Policy(), run) for run in load_runs([SETS / name])]
    summary = summarize(verdicts, intervals=False)
    assert summary.resolved > 20 and summary.false_stop_rate <= 0.02, summary.stops_by_rule
