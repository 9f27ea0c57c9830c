"""Importers: every format into Tether's event types, with costs that add up and labels found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.backtest.fixtures import mini_v1, mini_v2, swe_agent, write
from tether.backtest.importers import ImportError_, import_file, load_runs

SHARED = Path(__file__).parents[3] / "shared" / "data" / "trajectories"


def costs_add_up(run) -> None:
    assert sum(s.cost_usd for s in run.steps) == pytest.approx(run.total_cost_usd, rel=0.01)


def test_mini_v1_steps_observations_usage_and_timestamps(tmp_path: Path):
    data = mini_v1([("ls", 0, "a.py", 0.01), ("pytest", 1, "1 failed", 0.02), ("sed -i s/a/b/ a.py", 0, "", 0.03)])
    run = import_file(write(tmp_path / "t.traj.json.gz", data))
    assert run.source == "mini-swe-agent-1" and run.instance_id == "demo__repo-1"
    assert [(s.command, s.exit_code) for s in run.steps] == [("ls", 0), ("pytest", 1), ("sed -i s/a/b/ a.py", 0)]
    assert run.steps[1].input_tokens == 1100 and run.steps[1].ts == 1_700_000_010
    costs_add_up(run)
    events = run.events()
    types = [p.type for p, _ in events]
    assert types[0] == "run_started" and types[-1] == "run_finished"
    assert types.count("model_response") == types.count("tool_call") == types.count("tool_result") == 3
    results = [p for p, _ in events if p.type == "tool_result"]
    assert [r.ok for r in results] == [True, False, True]
    assert results[0].tree == results[1].tree != results[2].tree  # only the sed edits


def test_mini_v1_missing_costs_share_the_recorded_rest(tmp_path: Path):
    data = mini_v1([("ls", 0, "", 0.01), ("cat a", 0, "", None), ("cat b", 0, "", None)], total=0.05)
    run = import_file(write(tmp_path / "t.traj.json", data, gz=False))
    costs_add_up(run)
    assert run.steps[0].cost_usd == 0.01 and run.steps[1].cost_usd + run.steps[2].cost_usd == pytest.approx(0.04)
    assert "no recorded cost" in run.notes[0]


def test_mini_v1_format_errors_become_turns_without_a_tool_call(tmp_path: Path):
    data = mini_v1([("ls", 0, "", 0.01)])
    data["messages"][2]["content"] = "two actions ```bash\nls\n``` and ```bash\npwd\n```"
    run = import_file(write(tmp_path / "t.traj.json.gz", data))
    events = run.events()
    assert [p.tool_calls for p, _ in events if p.type == "model_response"] == [[]]
    assert "tool_call" not in [p.type for p, _ in events]


def test_mini_v2_tool_calls_and_exit_message(tmp_path: Path):
    data = mini_v2([[("ls", 0, "a.py")], [("python -m pytest", 1, "F"), ("cat a.py", 0, "x = 1")],
                    [("echo done", 0, "done")]], costs=[0.1, 0.2, 0.05])
    run = import_file(write(tmp_path / "v2.traj.json.gz", data))
    assert run.agent == "mini-swe-agent 2.0.0" and run.exit_status == "Submitted"
    assert [(s.command, s.exit_code, s.output) for s in run.steps] == [
        ("ls", 0, "a.py"), ("python -m pytest", 1, "F"), ("cat a.py", 0, "x = 1"), ("echo done", 0, "done")]
    assert [s.cost_usd for s in run.steps] == [0.1, 0.2, 0.0, 0.05]  # a turn's cost is on its first call
    assert run.steps[1].ts == 1_700_000_001.0
    costs_add_up(run)


def test_swe_agent_totals_are_spread_over_steps_by_context(tmp_path: Path):
    data = swe_agent([("open a.java", "[File]"), ("edit 1:1\nfoo\nend_of_edit", "ok"), ("submit", "diff")], 3.0)
    run = import_file(write(tmp_path / "x" / "trajs" / "org__repo-7.traj.gz", data))
    assert run.source == "swe-agent-traj" and run.instance_id == "org__repo-7"
    costs_add_up(run)
    assert run.steps[0].cost_usd < run.steps[1].cost_usd < run.steps[2].cost_usd  # context grows
    assert all(s.exit_code is None for s in run.steps)
    assert "spread" in run.notes[0]
    results = [p for p, _ in run.events() if p.type == "tool_result"]
    assert results[0].ok is None and results[0].tree != results[1].tree  # `edit` changes the tree


def test_labels_from_index_csv_results_summary_and_results_json(tmp_path: Path):
    mini_dir = tmp_path / "mini"
    write(mini_dir / "trajs" / "a" / "a.traj.json.gz", mini_v1([("ls", 0, "", 0.1)], instance="a"))
    write(mini_dir / "trajs" / "b" / "b.traj.json.gz", mini_v1([("ls", 0, "", 0.1)], instance="b"))
    (mini_dir / "results_summary.json").write_text(json.dumps(
        {"total": 2, "instances": [{"instance_id": "a", "resolved": True}, {"instance_id": "b", "resolved": False}]}))
    java = tmp_path / "java" / "run1"
    write(java / "trajs" / "x.traj.gz", swe_agent([("ls", "")], 1.0))
    write(java / "trajs" / "y.traj.gz", swe_agent([("ls", "")], 1.0))
    write(java / "trajs" / "z.traj.gz", swe_agent([("ls", "")], 1.0))
    (java / "results").mkdir()
    (java / "results" / "results.json").write_text(json.dumps(
        {"resolved": ["x"], "unresolved_ids": ["y"], "empty_patch_ids": [], "error_ids": ["z"]}))
    indexed = tmp_path / "indexed"
    write(indexed / "r" / "c.traj.gz", swe_agent([("ls", "")], 1.0))
    (indexed / "index.csv").write_text("run,instance_id,resolved,traj_file\nr,c,True,r/c.traj.gz\n")
    labels = {run.instance_id: run.resolved for run in load_runs([tmp_path])}
    assert labels == {"a": True, "b": False, "x": True, "y": False, "z": None, "c": True}


def test_bad_inputs_name_the_file(tmp_path: Path):
    bad = tmp_path / "bad.traj.json"
    bad.write_text("{not json")
    with pytest.raises(ImportError_, match=r"bad\.traj\.json: cannot read JSON"):
        import_file(bad)
    other = tmp_path / "other.traj.json"
    other.write_text('{"hello": 1}')
    with pytest.raises(ImportError_, match="not a trajectory Tether reads"):
        import_file(other)
    with pytest.raises(ImportError_, match="no such file"):
        list(load_runs([tmp_path / "missing"]))


@pytest.mark.skipif(not SHARED.exists(), reason="the shared trajectories are not beside this checkout")
def test_real_trajectories_import_with_labels_and_costs():
    mini = SHARED / "mini-swe-agent__gemini-3-pro__swebench-verified" / "trajs" / "astropy__astropy-12907"
    java = SHARED / "swe-agent__java-verified__multi-swe-bench" / "20240825_SWE-agent_gpt-4o-2024-05-13" / "trajs"
    runs = list(load_runs([mini, *sorted(java.iterdir())[:5]]))
    assert runs[0].resolved is True and len(runs[0].steps) == 20
    for run in runs:
        costs_add_up(run)
