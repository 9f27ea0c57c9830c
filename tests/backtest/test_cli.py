"""`tether import` and `tether backtest` as a user runs them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.backtest.fixtures import mini_v1, mini_v2, swe_agent, write
from tests.test_cli import tether


def make_data(root: Path) -> Path:
    data = root / "data"
    write(data / "a.traj.json.gz", mini_v1([("ls", 0, "x", 0.1)] + [("cat f", 0, "same", 0.1)] * 6, instance="a"))
    write(data / "b.traj.json.gz", mini_v2([[("ls", 0, "x")], [("pytest", 0, "ok")]], [0.1, 0.2], instance="b"))
    write(data / "c.traj.gz", swe_agent([("ls", "x"), ("submit", "")], 1.0))
    (data / "index.csv").write_text("run,instance_id,resolved,traj_file\nr,a,False,a.traj.json.gz\n"
                                    "r,b,True,b.traj.json.gz\nr,c,False,c.traj.gz\n")
    return data


def test_import_then_show_and_verify_imported_runs(repo: Path, tmp_path: Path):
    data = make_data(tmp_path)
    first = tether("import", str(data), cwd=repo)
    assert first.returncode == 0, first.stderr
    assert "imported 3 runs" in first.stdout
    again = tether("import", str(data), cwd=repo)
    assert "imported 0 runs" in again.stdout and "3 were already" in again.stdout
    runs = json.loads(tether("runs", "--json", cwd=repo).stdout)
    assert sorted(r["status"] for r in runs) == ["failed", "failed", "succeeded"]
    run_id = next(r["run_id"] for r in runs if r["usage"]["steps"] == 7)
    assert tether("verify", run_id, cwd=repo).returncode == 0
    shown = json.loads(tether("show", run_id, "--json", cwd=repo).stdout)
    assert shown["usage"]["usd"] == 0.7 and shown["usage"]["tool_calls"] == 7


def test_backtest_json_and_table(repo: Path, tmp_path: Path):
    data = make_data(tmp_path)
    policy = tmp_path / "p.toml"
    policy.write_text("[brakes]\nrepeat_max = 3\n")
    result = tether("backtest", "--policy", str(policy), str(data), "--json", cwd=repo)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    by_instance = {r["instance_id"]: r for r in report["runs"]}
    assert by_instance["a"]["stopped"] and by_instance["a"]["rule"] == "brakes.repeat"
    assert not by_instance["b"]["stopped"]
    assert report["summary"]["unresolved_stopped"] == 1 and report["summary"]["false_stops"] == 0
    assert set(report["by_source"]) == {"mini-swe-agent-1", "swe-agent-traj"}
    table = tether("backtest", "--policy", str(policy), str(data), cwd=repo, env={**os.environ, "COLUMNS": "250"})
    assert "brakes.repeat" in table.stdout and "false stops" in table.stdout


def test_backtest_sweep_writes_html(repo: Path, tmp_path: Path):
    data = make_data(tmp_path)
    page = tmp_path / "sweep.html"
    result = tether("backtest", "--sweep", str(data), "--html", str(page), "--json", cwd=repo)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["fit_runs"] + report["test_runs"] == 3 and report["frontier"]
    assert "<svg" in page.read_text()


def test_backtest_bad_inputs(repo: Path, tmp_path: Path):
    assert tether("backtest", str(tmp_path), cwd=repo).returncode == 2  # no trajectories there
    missing = tether("backtest", "--policy", str(tmp_path / "nope.toml"), str(tmp_path), cwd=repo)
    assert missing.returncode == 2 and "cannot read" in missing.stderr


WRONG_SHAPES = [
    {"messages": "not a list"}, {"messages": [{"role": "assistant", "content": 5}]},
    {"messages": [{"role": "assistant", "tool_calls": "x"}, {"role": "tool"}]}, {"trajectory": {"a": 1}},
    {"trajectory": [1, 2]}, {"messages": [], "info": {"model_stats": [1]}},
]


def test_well_formed_json_in_the_wrong_shape_is_a_clear_error(repo: Path, tmp_path: Path):
    for number, shape in enumerate(WRONG_SHAPES):
        path = tmp_path / f"bad{number}.traj.json"
        path.write_text(json.dumps(shape))
        command = ("import", "backtest")[number % 2]  # each shape through one of the two readers
        result = tether(command, str(path), cwd=repo)
        assert result.returncode == 2, (shape, result.stderr)
        assert str(path) in result.stderr and "Traceback" not in result.stderr, result.stderr
    runs = json.loads(tether("runs", "--json", cwd=repo).stdout)
    assert runs == []  # nothing half-imported


def test_a_label_file_in_the_wrong_shape_is_a_clear_error(repo: Path, tmp_path: Path):
    data = make_data(tmp_path)
    (data / "index.csv").unlink()
    (data / "results_summary.json").write_text("[1, 2]")
    result = tether("backtest", str(data), cwd=repo)
    assert result.returncode == 2 and "results_summary.json" in result.stderr and "Traceback" not in result.stderr


def test_a_sweep_fitted_on_one_collection_is_reported_on_the_other(repo: Path, tmp_path: Path):
    """Agent A's failed runs loop on one command; agent B's resolved runs do too: a brake fitted on A
    alone looks perfect there and is measured, honestly, on B."""
    for agent, resolved in (("agent-a", False), ("agent-b", True)):
        rows = ["run,instance_id,resolved,traj_file"]
        for number in range(4):
            instance = f"{agent}-{number}"
            looping = [("ls", 0, "x", 0.1)] + [("cat f", 0, "same", 0.1)] * 8
            steps = looping if number < 2 else [("ls", 0, "x", 0.1), ("pytest", 0, "ok", 0.1)]
            write(tmp_path / agent / f"{instance}.traj.json.gz", mini_v1(steps, instance=instance))
            rows.append(f"r,{instance},{resolved if number < 2 else not resolved},{instance}.traj.json.gz")
        (tmp_path / agent / "index.csv").write_text("\n".join(rows) + "\n")
    result = tether("backtest", str(tmp_path / "agent-a"), str(tmp_path / "agent-b"), "--sweep", "--fit-on",
                    "agent-a", "--json", cwd=repo)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["fit_runs"], report["test_runs"]) == (4, 4)
    chosen = report["chosen"]
    assert chosen["fit"]["false_stop_rate"] == 0 and chosen["fit"]["saved_share"] > 0.5
    assert chosen["test"]["false_stops"] == 2  # on B the same loops were its resolved runs
    unknown = tether("backtest", str(tmp_path / "agent-a"), "--sweep", "--fit-on", "agent-z", cwd=repo)
    assert unknown.returncode == 2 and "agent-z" in unknown.stderr and "agent-a" in unknown.stderr
