"""The orchestrated architecture with scripted roles, on a real repository, worktrees and sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import call, git, payloads, run_scripted
from tether.agents.orchestrated import parse_plan
from tether.ledger import Ledger
from tether.replay import replay_run

CHECK = '[[checks]]\nname = "tests"\ncommand = "python -m pytest -q -p no:cacheprovider test_ab.py"\n'
ORCHESTRATED = '[agent]\narchitecture = "orchestrated"\n' + CHECK
TEST = ("from a import a\nfrom b import b\n\n\ndef test_a():\n    assert a() == 1\n\n\n"
        "def test_b():\n    assert b() == 2\n")


@pytest.fixture
def two_files(tmp_path: Path) -> Path:
    """Two stubs and one test over both: work that splits into two subtasks in different files."""
    path = tmp_path / "ab"
    path.mkdir()
    (path / "a.py").write_text("def a():\n    return 0\n")
    (path / "b.py").write_text("def b():\n    return 0\n")
    (path / "test_ab.py").write_text(TEST)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "-c", "user.email=dev@example.com", "-c", "user.name=Dev", "commit", "-qm", "stubs")
    return path


def plan(*titles: str) -> dict:
    subtasks = [{"title": t, "instruction": f"do {t}"} for t in titles]
    return {"role": "planner", "content": json.dumps({"subtasks": subtasks})}


def as_role(role: str, turn: dict) -> dict:
    return {"role": role, **turn}


def write(path: str, content: str) -> dict:
    return call("write_file", path=path, content=content)


SPLIT = [
    plan("fix a", "fix b"),
    as_role("executor-1", write("a.py", "def a():\n    return 1\n")),
    as_role("executor-1", call("submit", summary="a done")),
    as_role("executor-2", write("b.py", "def b():\n    return 2\n")),
    as_role("executor-2", call("submit", summary="b done")),
]


def test_planner_executors_reviewer_succeed_with_merged_branches(ledger: Ledger, two_files: Path,
                                                                  tmp_path: Path) -> None:
    summary = run_scripted(ledger, two_files, tmp_path, SPLIT, ORCHESTRATED)
    assert summary["status"] == "succeeded", summary["reason"]
    assert summary["reason"] == "all required checks passed after integration"
    events = ledger.events(summary["run_id"])
    # an executor's submit runs no checks, and its handover does not claim they passed
    assert [e.payload["reason"] for e in events if e.type == "handover"] == ["handed over: it submitted"] * 2
    assert ledger.get_run(summary["run_id"]).architecture == "orchestrated"
    # every role's events carry its name; the run's start and end carry none
    roles = [e.payload.get("role") for e in events]
    assert roles[0] is None and roles[-1] is None
    assert {"planner", "executor-1", "executor-2", "reviewer"} <= set(roles)
    plan_event = payloads(ledger, summary["run_id"], "plan")[0]
    assert [s["title"] for s in plan_event["subtasks"]] == ["fix a", "fix b"] and not plan_event["fallback"]
    merges = payloads(ledger, summary["run_id"], "merge")
    assert [(m["name"], m["merged"], m["conflicts"]) for m in merges] == [("executor-1", True, []),
                                                                          ("executor-2", True, [])]
    # each executor's work is on its own branch; the run's branch holds both
    run_id = summary["run_id"]
    assert git(two_files, "show", f"tether/{run_id}.executor-1:a.py") == "def a():\n    return 1\n"
    assert git(two_files, "show", f"tether/{run_id}.executor-1:b.py") == "def b():\n    return 0\n"
    assert git(two_files, "show", f"tether/{run_id}:b.py") == "def b():\n    return 2\n"
    assert git(two_files, "show", f"tether/{run_id}:a.py") == "def a():\n    return 1\n"
    # tool call ids are unique in the run although each role's script counts from zero
    ids = [p["call_id"] for p in payloads(ledger, run_id, "tool_call")]
    assert len(ids) == len(set(ids)) == 4
    assert not (two_files / ".tether" / "worktrees" / f"{run_id}.executor-1").exists()
    assert ledger.verify(run_id).ok


def test_executors_work_from_the_base_not_from_each_other(ledger: Ledger, two_files: Path, tmp_path: Path) -> None:
    turns = [plan("fix a", "fix b"),
             as_role("executor-1", write("a.py", "def a():\n    return 1\n")),
             as_role("executor-1", call("submit", summary="a")),
             as_role("executor-2", call("bash", command="grep -c 'return 0' a.py")),
             as_role("executor-2", write("b.py", "def b():\n    return 2\n")),
             as_role("executor-2", call("submit", summary="b"))]
    summary = run_scripted(ledger, two_files, tmp_path, turns, ORCHESTRATED)
    assert summary["status"] == "succeeded"
    grep = next(p for p in payloads(ledger, summary["run_id"], "tool_result") if p.get("role") == "executor-2")
    assert grep["observation"].startswith("exit code 0\n1")  # executor-2 still sees the stub of a.py


CONFLICT = [
    plan("fix a one way", "fix a another way"),
    as_role("executor-1", write("a.py", "def a():\n    return 1  # one\n")),
    as_role("executor-1", call("submit", summary="one")),
    as_role("executor-2", write("a.py", "def a():\n    return 1  # two\n")),
    as_role("executor-2", call("submit", summary="two")),
]


def test_conflicts_are_left_for_the_reviewer_who_resolves_them(ledger: Ledger, two_files: Path,
                                                               tmp_path: Path) -> None:
    turns = [*CONFLICT,
             as_role("reviewer", call("read_file", path="a.py")),
             as_role("reviewer", write("a.py", "def a():\n    return 1\n")),
             as_role("reviewer", write("b.py", "def b():\n    return 2\n")),
             as_role("reviewer", call("submit", summary="resolved"))]
    summary = run_scripted(ledger, two_files, tmp_path, turns, ORCHESTRATED)
    assert summary["status"] == "succeeded", summary["reason"]
    run_id = summary["run_id"]
    merges = payloads(ledger, run_id, "merge")
    assert merges[1]["merged"] and merges[1]["conflicts"] == ["a.py"]
    read = next(p for p in payloads(ledger, run_id, "tool_result") if p.get("role") == "reviewer")
    assert "<<<<<<<" in read["observation"] and "# two" in read["observation"]
    # the reviewer saw the failing checks of the merged work before its first turn
    checks = [p for p in payloads(ledger, run_id, "check_finished") if p["call_id"] == "reviewer.integration"]
    assert checks and not checks[0]["passed"]
    assert git(two_files, "show", f"tether/{run_id}:a.py") == "def a():\n    return 1\n"


def test_conflicting_branch_is_rejected_when_the_policy_says_so(ledger: Ledger, two_files: Path,
                                                                tmp_path: Path) -> None:
    turns = [*CONFLICT, as_role("reviewer", write("b.py", "def b():\n    return 2\n")),
             as_role("reviewer", call("submit", summary="kept the first"))]
    policy = ORCHESTRATED + '[orchestrated]\non_conflict = "reject"\n'
    summary = run_scripted(ledger, two_files, tmp_path, turns, policy)
    assert summary["status"] == "succeeded"
    merges = payloads(ledger, summary["run_id"], "merge")
    assert not merges[1]["merged"] and merges[1]["reason"] == "rejected: conflicts in a.py"
    assert git(two_files, "show", f"tether/{summary['run_id']}:a.py") == "def a():\n    return 1  # one\n"


def test_write_caps_are_shared_by_the_executors(ledger: Ledger, two_files: Path, tmp_path: Path) -> None:
    summary = run_scripted(ledger, two_files, tmp_path, SPLIT, ORCHESTRATED + "[writes]\nmax_files = 1\n")
    run_id = summary["run_id"]
    denied = [p for p in payloads(ledger, run_id, "policy_decision") if p["rule"] == "writes.max_files"]
    # executor-2's one file is within the cap on its own, but not with executor-1's
    assert len(denied) == 1 and denied[0]["role"] == "executor-2" and denied[0]["rolled_back"]
    assert summary["status"] == "failed"  # the checks fail and the reviewer's script is empty
    assert git(two_files, "show", f"tether/{run_id}:b.py") == "def b():\n    return 0\n"


def test_an_unreadable_plan_falls_back_to_one_subtask(ledger: Ledger, two_files: Path, tmp_path: Path) -> None:
    turns = [{"role": "planner", "content": "I think we should fix both."},
             as_role("executor", write("a.py", "def a():\n    return 1\n")),
             as_role("executor", write("b.py", "def b():\n    return 2\n")),
             as_role("executor", call("submit", summary="both"))]
    summary = run_scripted(ledger, two_files, tmp_path, turns, ORCHESTRATED)
    assert summary["status"] == "succeeded"
    plan_event = payloads(ledger, summary["run_id"], "plan")[0]
    assert plan_event["fallback"] and plan_event["subtasks"][0]["instruction"] == "Make the tests pass"
    assert [m["name"] for m in payloads(ledger, summary["run_id"], "merge")] == ["executor-1"]


def test_an_executor_hands_over_after_its_step_limit(ledger: Ledger, two_files: Path, tmp_path: Path) -> None:
    turns = [plan("fix a and b"),
             as_role("executor-1", call("bash", command="ls")),
             as_role("executor-1", write("a.py", "def a():\n    return 1\n")),
             as_role("executor-1", write("b.py", "def b():\n    return 2\n"))]
    policy = ORCHESTRATED + "[orchestrated]\nexecutor_max_steps = 2\n"
    summary = run_scripted(ledger, two_files, tmp_path, turns, policy)
    handover = payloads(ledger, summary["run_id"], "handover")[0]
    assert handover["reason"] == "handed over: executor-1 used its steps"
    assert handover["diffstat"]["files"] == 1  # a.py; the third turn was never asked for
    assert summary["status"] == "failed"  # no reviewer turns to fix b.py


def test_check_after_write_hands_an_executor_over(ledger: Ledger, two_files: Path, tmp_path: Path) -> None:
    turns = [plan("fix both"),
             as_role("executor-1", write("a.py", "def a():\n    return 1\n")),
             as_role("executor-1", write("b.py", "def b():\n    return 2\n"))]
    policy = ORCHESTRATED.replace("[agent]\n", "[agent]\ncheck_after_write = true\n")
    summary = run_scripted(ledger, two_files, tmp_path, turns, policy)
    assert summary["status"] == "succeeded"
    assert payloads(ledger, summary["run_id"], "handover")[0]["reason"] == "handed over: the required checks pass"


def test_a_run_stopped_in_an_executor_delivers_from_its_own_worktree(ledger: Ledger, two_files: Path,
                                                                     tmp_path: Path) -> None:
    turns = [plan("fix a"), as_role("executor-1", write("a.py", "def a():\n    return 1\n"))]
    summary = run_scripted(ledger, two_files, tmp_path, turns, ORCHESTRATED + "[budget]\nmax_steps = 2\n")
    assert summary["status"] == "stopped" and summary["reason"] == "step budget of 2 used"
    run_id = summary["run_id"]
    finished = payloads(ledger, run_id, "run_finished")[0]
    assert finished["branch"] == f"tether/{run_id}" and "role" not in finished
    # the executor's work is kept on its branch; no worktree is left behind
    assert git(two_files, "show", f"tether/{run_id}.executor-1:a.py") == "def a():\n    return 1\n"
    assert not list((two_files / ".tether" / "worktrees").glob(f"{run_id}*/"))


def test_replay_feeds_each_role_its_own_recorded_turns(ledger: Ledger, two_files: Path, tmp_path: Path) -> None:
    summary = run_scripted(ledger, two_files, tmp_path, SPLIT, ORCHESTRATED)
    report = replay_run(ledger, summary["run_id"])
    assert report.replay_status == "succeeded" and report.identical and report.steps_compared == 4


@pytest.mark.parametrize("text", ['{"subtasks": []}', "no plan", '{"subtasks": [{"title": "x"}]}'])
def test_parse_plan_refuses_plans_without_subtasks(text: str) -> None:
    assert parse_plan(text) is None


def test_parse_plan_reads_fenced_json_with_prose() -> None:
    text = 'Here is the plan:\n```json\n{"subtasks": [{"title": "t", "instruction": "i"}]}\n```\nDone.'
    plan_ = parse_plan(text)
    assert plan_ is not None and plan_.subtasks[0].title == "t"
