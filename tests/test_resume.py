"""Resume after a crash: SIGKILL at every event boundary, resume, and end exactly where an
uninterrupted run ends (same events apart from resume markers, same tree, same branch content)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIX, bash, call, git, script, without_resumes
from tether.ledger import Ledger
from tether.policy import load_policy
from tether.runner import RunError, RunSpec, resume_run, start_run

DRIVER = Path(__file__).parent / "crash_driver.py"
CHECK = 'python -c "import raindrops as r; assert r.convert(15) == \'PlingPlang\', r.convert(15)"'
POLICY = f"""
[writes]
max_lines = 40
[commands]
deny = ["git push"]
[[checks]]
name = "quick"
command = '''{CHECK}'''
"""
WRONG = "def convert(number):\n    return 'Pling' if number % 3 == 0 else str(number)\n"
TURNS = [
    bash("ls"),
    call("read_file", path="raindrops.py"),
    call("write_file", path="notes.md", content="plan\n"),
    bash("git push origin main"),
    call("write_file", path="raindrops.py", content=WRONG),
    call("submit", summary="first try"),
    call("write_file", path="big.txt", content="x\n" * 100),
    call("edit_file", path="notes.md", old="plan", new="plan: combine sounds"),
    bash("echo step9 >> notes.md"),
    call("write_file", path="raindrops.py", content=FIX),
    bash("cat notes.md"),
    {"content": "checking", "tool_calls": [{"name": "bash", "arguments": {"command": "wc -l raindrops.py"}},
                                           {"name": "read_file", "arguments": {"path": "notes.md"}}]},
    call("submit", summary="combined the sounds"),
]
VOLATILE = {"latency_s", "duration_s", "wall_s", "user", "worktree", "branch", "commit", "ts"}


def normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def story(ledger: Ledger, run_id: str) -> list[tuple[str, Any]]:
    return [(e.type, normalise(e.payload)) for e in without_resumes(ledger, run_id)]


def branch_tree(repo: Path, run_id: str) -> str:
    return git(repo, "rev-parse", f"tether/{run_id}^{{tree}}").strip()


@pytest.fixture
def setup(repo: Path, tmp_path: Path, sqlite_url: str):
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(POLICY)
    model = script(tmp_path / "turns.json", TURNS)
    ledger = Ledger(sqlite_url)
    reference = start_run(ledger, RunSpec("crash test", repo, load_policy(policy_file), model=model))
    assert reference["status"] == "succeeded", reference
    assert reference["usage"]["steps"] >= 12 and reference["rework"] == 1
    assert [d["rule"] for d in reference["denials"]] == ["commands.deny", "writes.max_lines"]
    yield ledger, repo, policy_file, model, reference
    ledger.close()


def crash(url: str, kill_after: int, *args: str) -> int:
    return subprocess.run([sys.executable, str(DRIVER), url, str(kill_after), *args],
                          capture_output=True).returncode


def test_sigkill_at_every_event_boundary_then_resume(setup, sqlite_url: str):
    ledger, repo, policy_file, model, reference = setup
    expected = story(ledger, reference["run_id"])
    expected_tree = branch_tree(repo, reference["run_id"])
    for kill_after in range(1, len(expected) + 1):
        known = {run.id for run in ledger.list_runs(1000)}
        code = crash(sqlite_url, kill_after, "start", str(repo), str(policy_file), model)
        assert code == -9, f"the run was not killed after event {kill_after}"
        (run_id,) = {run.id for run in ledger.list_runs(1000)} - known
        summary = resume_run(ledger, run_id)
        where = f"killed after event {kill_after} ({expected[kill_after - 1][0]})"
        assert summary["status"] == "succeeded", where
        assert story(ledger, run_id) == expected, where
        assert branch_tree(repo, run_id) == expected_tree, where
        assert ledger.verify(run_id).ok, where
        assert not (repo / ".tether" / "worktrees" / run_id).exists(), where


def test_resume_reexecutes_an_unfinished_tool_call_and_records_it(setup, sqlite_url: str):
    ledger, repo, policy_file, model, reference = setup
    types = [t for t, _ in story(ledger, reference["run_id"])]
    first_tool_call = types.index("tool_call") + 1
    known = {run.id for run in ledger.list_runs(1000)}
    assert crash(sqlite_url, first_tool_call, "start", str(repo), str(policy_file), model) == -9
    (run_id,) = {run.id for run in ledger.list_runs(1000)} - known
    resume_run(ledger, run_id)
    marker = next(e.payload for e in ledger.events(run_id) if e.type == "run_resumed")
    assert marker["reexecuting"] == ["call_0_0"]


def test_resume_refuses_finished_live_and_unknown_runs(setup, sqlite_url: str):
    ledger, repo, _policy_file, _model, reference = setup
    with pytest.raises(RunError, match="is succeeded"):
        resume_run(ledger, reference["run_id"])
    with pytest.raises(Exception, match="no run"):
        resume_run(ledger, "no-such-run")
    # a run held by this (live) process cannot be taken over
    ledger.create_run("held", repo=str(repo), instruction="x")
    from tether import lease

    ledger.claim_run("held", "running", "running", owner=lease.owner_id())
    with pytest.raises(RunError, match="held by a live process"):
        resume_run(ledger, "held")


def test_resume_of_a_run_that_died_before_it_started(ledger: Ledger, repo: Path):
    ledger.create_run("early", repo=str(repo), instruction="x", owner="elsewhere:1:x", heartbeat_at=0.0)
    with pytest.raises(RunError, match="died before it started"):
        resume_run(ledger, "early")
    assert ledger.get_run("early").status == "failed"
