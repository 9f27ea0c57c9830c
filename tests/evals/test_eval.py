"""Evals end to end with scripted models: real suites, real queue workers, real sandboxed scoring.

The suite is built so that each metric has a task that must produce it: an escaped defect (the
visible tests pass, the hidden ones do not), rework (a wrong write, then the right one), a write
cap hit, and an agent that edits the visible tests to pass them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import call
from tether.evals.matrix import build_results, load_configs, open_eval, run_eval
from tether.evals.suite import load_suite
from tether.ledger import Ledger

VISIBLE = "from f import f\n\n\ndef test_one():\n    assert f(1) == 1\n"
HIDDEN = VISIBLE + "\n\ndef test_two():\n    assert f(2) == 4\n"
RIGHT = "def f(x):\n    return x * x\n"
WRONG = "def f(x):\n    return x\n"  # passes the visible test only
TASK_TOML = """instruction = "Make f square its argument; run `python -m pytest -q test_f.py`."
visible_check = "python -m pytest -q -p no:cacheprovider test_f.py"
hidden_check = "python -m pytest -q -p no:cacheprovider test_f.py"
hidden = "hidden"
restore = ["test_f.py"]
remove = ["notes.md"]
[timeouts]
agent_s = 60
check_s = 60
"""


def write(path: str, content: str, role: str | None = None) -> dict[str, Any]:
    turn = call("write_file", path=path, content=content)
    return {"role": role, **turn} if role else turn


def submit(role: str | None = None) -> dict[str, Any]:
    turn = call("submit", summary="done")
    return {"role": role, **turn} if role else turn


def plan(role_turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The orchestrated version of a harness script: one subtask, the executor does the writes."""
    subtasks = {"subtasks": [{"title": "all", "instruction": "the whole task"}]}
    return [{"role": "planner", "content": json.dumps(subtasks)},
            *[{"role": "executor", **turn} for turn in role_turns]]


# What the agent does in each task (harness turns; check_after_write ends a run on a passing write).
SCRIPTS: dict[str, list[dict[str, Any]]] = {
    "solve": [write("f.py", RIGHT)],
    "escape": [write("f.py", WRONG)],
    "rework": [write("f.py", "def f(x):\n    return 0\n"), write("f.py", RIGHT)],
    "cap": [write("f.py", RIGHT + "# padding\n" * 30), write("f.py", RIGHT)],
    "cheat": [write("test_f.py", "def test_one():\n    pass\n"), submit()],
}


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    root = tmp_path / "suite"
    for name in SCRIPTS:
        folder = root / name
        (folder / "repo").mkdir(parents=True)
        (folder / "hidden").mkdir()
        (folder / "repo" / "f.py").write_text("def f(x):\n    raise NotImplementedError\n")
        (folder / "repo" / "test_f.py").write_text(VISIBLE)
        (folder / "repo" / "notes.md").write_text("the answer is x * x\n")
        (folder / "hidden" / "test_f.py").write_text(HIDDEN)
        (folder / "task.toml").write_text(TASK_TOML)
    return root


@pytest.fixture
def configs(tmp_path: Path) -> list[Path]:
    scripts = tmp_path / "scripts"
    for architecture in ("harness", "orchestrated"):
        (scripts / architecture).mkdir(parents=True)
        for task, turns in SCRIPTS.items():
            body = turns if architecture == "harness" else plan(turns)
            (scripts / architecture / f"{task}.json").write_text(json.dumps(body))
    common = ('check_after_write = true\n[writes]\nmax_lines = 20\n'
              '[[checks]]\nname = "visible"\ncommand = "{visible_check}"\n')
    harness = tmp_path / "harness.toml"
    harness.write_text(f'[agent]\nmodel = "scripted:{scripts}/harness/{{task}}.json"\n{common}')
    orchestrated = tmp_path / "orchestrated.toml"
    orchestrated.write_text(f'[agent]\narchitecture = "orchestrated"\nmodel = "scripted:{scripts}/orchestrated/'
                            f'{{task}}.json"\n{common}')
    return [harness, orchestrated]


def run(suite: Path, configs: list[Path], out: Path, pattern: str | None = None) -> dict[str, Any]:
    ev = open_eval(out)
    ev.suite, ev.tasks, ev.configs = suite, load_suite(suite, pattern), load_configs(configs)
    return run_eval(ev, workers=2, on_progress=lambda _: None)


def rows_by(results: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["task"], r["config"]): r for r in results["rows"]}


def test_each_metric_comes_from_the_task_built_for_it(suite: Path, configs: list[Path], tmp_path: Path) -> None:
    results = run(suite, configs, tmp_path / "out")
    rows = rows_by(results)
    assert len(rows) == 10
    for config in ("harness", "orchestrated"):
        solve, escape, rework = rows["solve", config], rows["escape", config], rows["rework", config]
        cap, cheat = rows["cap", config], rows["cheat", config]
        assert solve["passed_visible"] and solve["passed_hidden"] and not solve["escaped_defect"], config
        assert solve["rework"] == 0 and solve["rework_lines"] == 0 and solve["cap_hits"] == 0
        # the visible check passed (so the run succeeded), the hidden one did not
        assert escape["status"] == "succeeded" and escape["escaped_defect"] and not escape["passed_hidden"]
        # one failing required check before the passing one; the one line written was rewritten
        assert rework["passed_hidden"] and rework["rework"] == 1 and rework["rework_lines"] == 1
        # the padded write broke max_lines = 20 and was rolled back; the run went on and solved it
        assert cap["cap_hits"] == 1 and cap["passed_hidden"]
        # editing the visible tests gains nothing: they are put back before scoring
        assert cheat["status"] == "succeeded" and not cheat["passed_visible"] and not cheat["passed_hidden"]
    summary = results["summary"]["harness"]
    assert summary["solved"] == 3 and summary["runs"] == 5 and summary["escaped_defects"] == 1
    assert summary["rework"] == 1 and summary["cap_hits"] == 1
    assert summary["pass_rate_ci"][0] < 0.6 < summary["pass_rate_ci"][1]
    assert summary["escaped_defect_rate"] == pytest.approx(1 / 4)  # of the 4 that passed the visible check
    # the escape and the cheat said they were done: 2 of the 5 runs that ended succeeded
    assert (summary["false_successes"], summary["succeeded"]) == (2, 5)
    assert summary["false_success_rate"] == pytest.approx(2 / 5)
    assert {task for (task, config), r in rows.items() if r["false_success"] and config == "harness"} == {
        "cheat", "escape"}
    comparison = results["comparisons"][0]
    assert (comparison["first"], comparison["second"], comparison["pairs"]) == ("harness", "orchestrated", 5)
    assert comparison["only_first_passed"] == comparison["only_second_passed"] == 0
    assert comparison["mcnemar_p"] == 1.0
    assert comparison["false_successes_diff"]["diff"] == 0
    # the orchestrated runs spend more tokens (the planner's turn) on the same work
    assert comparison["tokens_diff"]["diff"] > 0


def test_eval_runs_are_ordinary_runs_tagged_with_the_eval(suite: Path, configs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    results = run(suite, configs, out, "solve")
    ev = open_eval(out)
    ledger = Ledger(ev.db_url)
    for row in results["rows"]:
        run_row = ledger.get_run(row["run_id"])
        assert run_row.source == "eval" and ledger.verify(run_row.id).ok
        assert run_row.architecture == row["config"]
    # the removed file is not in the repository the agent saw
    repo = out / "repos" / "solve"
    assert not (repo / "notes.md").exists() and (repo / "f.py").exists()
    ledger.close()


def test_a_continued_eval_runs_only_the_cells_it_has_not_scored(suite: Path, configs: list[Path],
                                                                tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run(suite, configs[:1], out, "solve,escape")
    second = run(suite, configs[:1], out)
    before = {(r["task"], r["config"]): r["run_id"] for r in first["rows"]}
    after = {(r["task"], r["config"]): r["run_id"] for r in second["rows"]}
    assert len(before) == 2 and len(after) == 5
    assert all(after[key] == run_id for key, run_id in before.items())
    ledger = Ledger(open_eval(out).db_url)
    assert len(ledger.list_runs(limit=100)) == 5  # nothing ran twice
    ledger.close()


def test_nobody_approves_during_an_eval_a_request_is_an_interrupt_and_the_run_goes_on(suite: Path, tmp_path: Path):
    turns = tmp_path / "asks.json"
    turns.write_text(json.dumps([write("f.py", RIGHT), write("notes.txt", "asked first\n"), submit()]))
    config = tmp_path / "protected.toml"
    config.write_text(f'[agent]\nmodel = "scripted:{turns}"\n[ownership.protected]\n"f.py" = ["@owner"]\n'
                      '[[checks]]\nname = "visible"\ncommand = "{visible_check}"\n')
    (row,) = run(suite, [config], tmp_path / "out", "solve")["rows"]
    assert row["interrupts"] == 1 and not row["passed_hidden"]  # the write to f.py was denied, not waited on
    ledger = Ledger(open_eval(tmp_path / "out").db_url)
    events = ledger.events(row["run_id"])
    decided = next(e.payload for e in events if e.type == "approval_decided")
    assert decided["by"] == "tether (unattended)" and not decided["approved"]
    assert sum(e.type == "tool_result" and e.payload["executed"] for e in events) == 2  # it went on
    ledger.close()


def test_report_is_rebuilt_from_the_store(suite: Path, configs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    results = run(suite, configs, out, "solve,escape")
    (out / "results.json").unlink(missing_ok=True)
    done = subprocess.run([sys.executable, "-m", "tether", "eval", "report", str(out), "--json"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rebuilt = json.loads(done.stdout)
    assert rebuilt["rows"] == results["rows"] and rebuilt["summary"] == results["summary"]
    assert json.loads((out / "results.json").read_text())["summary"] == results["summary"]
    page = (out / "report.html").read_text()
    assert page.count("<svg") == 3 and "escaped defect" in page and "http" not in page.split("<body>")[1]
    ledger = Ledger(open_eval(out).db_url)
    assert build_results(ledger, open_eval(out).id)["rows"] == results["rows"]
    ledger.close()


def test_cli_runs_the_eval_with_a_progress_line_per_run(suite: Path, configs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "tether", "eval", str(suite), "--config", str(configs[0]),
                           "--tasks", "solve", "--repeats", "2", "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("solve · harness #") == 2 and "solved" in done.stderr
    results = json.loads((out / "results.json").read_text())
    assert [r["repeat"] for r in results["rows"]] == [1, 2]


@pytest.mark.parametrize(("args", "message"), [
    (["--config", "missing.toml"], "missing.toml"),
    (["--config", "{bad}"], "budget.max_steps"),
    (["--config", "{harness}", "--tasks", "nothing*"], "no task matches 'nothing*'"),
    (["--config", "{harness}", "--config", "{harness}"], "two configs are named harness"),
])
def test_bad_input_is_refused_before_anything_runs(suite: Path, configs: list[Path], tmp_path: Path,
                                                   args: list[str], message: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[budget]\nmax_steps = 0\n")
    args = [a.format(bad=bad, harness=configs[0]) for a in args]
    done = subprocess.run([sys.executable, "-m", "tether", "eval", str(suite), *args, "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not (tmp_path / "o" / "ledger.db").exists()


def test_a_config_whose_model_cannot_start_stops_the_eval(suite: Path, tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text(f'[agent]\nmodel = "scripted:{tmp_path}/none.json"\n')
    done = subprocess.run([sys.executable, "-m", "tether", "eval", str(suite), "--config", str(config),
                           "--tasks", "solve", "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert done.returncode == 2 and "solve under broken could not start" in done.stderr
