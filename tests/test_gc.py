"""tether gc: worktrees and branches of finished runs go by age and status; event logs, pushed
branches, runs that can still go on and environments in use stay."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import CHECK, FIX, call, git, run_scripted
from tether import gc
from tether.ledger import Ledger

TETHER = [sys.executable, "-m", "tether"]
PROTECTED = '[ownership.protected]\n"raindrops.py" = ["alice"]\n'
FIXED = [call("write_file", path="raindrops.py", content=FIX), call("submit", summary="fixed")]


def branches(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/tether/").split()


def age(ledger: Ledger, run_id: str, seconds: float) -> None:
    ledger.update_run(run_id, updated_at=time.time() - seconds)


def test_a_finished_runs_branch_goes_and_its_log_still_verifies(ledger: Ledger, repo: Path, tmp_path: Path):
    done = run_scripted(ledger, repo, tmp_path, FIXED, CHECK)
    assert done["status"] == "succeeded" and branches(repo) == [done["branch"]]
    age(ledger, done["run_id"], 3600)
    found = gc.collect(ledger, repo, older_than_s=60)
    assert [(i.kind, i.target) for i in found.removed] == [("branch", done["branch"])]
    assert branches(repo) == []
    assert ledger.verify(done["run_id"]).ok and len(ledger.events(done["run_id"])) == done["events"]


def test_recent_runs_and_other_statuses_are_kept_with_a_reason(ledger: Ledger, repo: Path, tmp_path: Path):
    failed = run_scripted(ledger, repo, tmp_path, [call("submit", summary="nothing")],
                          CHECK + "[budget]\nmax_steps = 1\n")
    assert failed["status"] in ("failed", "stopped")
    recent = gc.collect(ledger, repo, older_than_s=3600)
    assert recent.removed == [] and recent.kept[0].reason == "it finished too recently"
    age(ledger, failed["run_id"], 7200)
    other = gc.collect(ledger, repo, older_than_s=3600, statuses=("succeeded",))
    assert other.removed == [] and other.kept[0].reason == f"it is {failed['status']}"
    assert branches(repo) == [failed["branch"]]


def test_a_paused_run_keeps_its_worktree_and_branch(ledger: Ledger, repo: Path, tmp_path: Path):
    paused = run_scripted(ledger, repo, tmp_path, FIXED, CHECK + PROTECTED)
    assert paused["status"] == "awaiting_approval"
    age(ledger, paused["run_id"], 30 * 86400)
    found = gc.collect(ledger, repo, older_than_s=0)
    assert found.removed == []
    assert {i.kind for i in found.kept} == {"worktree", "branch"}
    assert all(i.reason == "it can still go on" for i in found.kept)
    assert (repo / ".tether" / "worktrees" / paused["run_id"]).is_dir()


def test_a_pushed_branch_stays(ledger: Ledger, repo: Path, tmp_path: Path):
    done = run_scripted(ledger, repo, tmp_path, FIXED, CHECK)
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "origin", done["branch"])  # pushed, no upstream set: a remote-tracking ref holds it
    age(ledger, done["run_id"], 3600)
    found = gc.collect(ledger, repo, older_than_s=0)
    assert found.removed == [] and found.kept[0].reason == f"it was pushed (origin/{done['branch']})"
    git(repo, "branch", "-q", f"--set-upstream-to=origin/{done['branch']}", done["branch"])
    git(repo, "update-ref", "-d", f"refs/remotes/origin/{done['branch']}")
    git(repo, "update-ref", f"refs/remotes/origin/{done['branch']}", done["base_commit"])  # tip not on the remote
    assert gc.collect(ledger, repo, older_than_s=0).kept[0].reason == f"it tracks origin/{done['branch']}"
    assert branches(repo) == [done["branch"]]


def test_a_branch_delivered_to_a_remote_named_by_url_stays(repo: Path, tmp_path: Path):
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    (repo / "tether.toml").write_text(CHECK + f'[delivery]\nmode = "push"\nremote = "file://{remote}"\n')
    model = tmp_path / "t.json"
    model.write_text(json.dumps(FIXED))
    ran = subprocess.run([*TETHER, "run", "fix", "--model", f"scripted:{model}", "--json"], cwd=repo,
                         capture_output=True, text=True)
    done = json.loads(ran.stdout)
    assert done["status"] == "succeeded", ran.stderr
    assert git(remote, "for-each-ref", "--format=%(refname:short)") == f"{done['branch']}\n"  # pushed, by URL
    ledger = Ledger(f"sqlite:///{repo / '.tether' / 'tether.db'}")
    age(ledger, done["run_id"], 3600)
    found = gc.collect(ledger, repo, older_than_s=0, dry_run=True)
    ledger.close()
    assert found.removed == [] and found.kept[0].reason.startswith("it was delivered to file://")


def test_leftover_worktrees_and_role_branches_go_and_unknown_branches_stay(ledger: Ledger, repo: Path,
                                                                           tmp_path: Path):
    done = run_scripted(ledger, repo, tmp_path, FIXED, CHECK)
    leftover = repo / ".tether" / "worktrees" / f"{done['run_id']}.executor"  # as a crash leaves a role's
    git(repo, "worktree", "add", "-q", "-b", f"{done['branch']}.executor", str(leftover), done["base_commit"])
    git(repo, "branch", "-q", "tether/not-ours", done["base_commit"])  # another store's run
    age(ledger, done["run_id"], 3600)
    found = gc.collect(ledger, repo, older_than_s=0)
    assert sorted(i.target for i in found.removed) == sorted([str(leftover), done["branch"],
                                                              f"{done['branch']}.executor"])
    assert not leftover.exists() and branches(repo) == ["tether/not-ours"]
    assert "executor" not in git(repo, "worktree", "list")


def test_dry_run_removes_nothing(ledger: Ledger, repo: Path, tmp_path: Path):
    done = run_scripted(ledger, repo, tmp_path, FIXED, CHECK)
    age(ledger, done["run_id"], 3600)
    assert [i.target for i in gc.collect(ledger, repo, 0, dry_run=True).removed] == [done["branch"]]
    assert branches(repo) == [done["branch"]]


def test_environments_unused_go_and_one_in_use_stays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = gc.cache_root()
    old, fresh, busy = (root / name for name in ("old", "fresh", "busy"))
    for folder in (old, fresh, busy):
        folder.mkdir(parents=True)
        (folder / ".complete").write_text("{}")
    for folder in (old, busy):
        os.utime(folder / ".complete", (time.time() - 10 * 86400,) * 2)
    with (root / "busy.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = gc.collect_environments(older_than_s=86400)
    assert [Path(i.target).name for i in found.removed] == ["old"]
    assert {Path(i.target).name: i.reason for i in found.kept} == {"busy": "in use", "fresh": "used too recently"}
    assert not old.exists() and fresh.exists() and busy.exists()


@pytest.mark.parametrize("text, seconds", [("0", 0), ("90", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800)])
def test_ages(text: str, seconds: float):
    assert gc.parse_age(text) == seconds


def test_cli_removes_and_refuses_bad_input_naming_it(repo: Path, tmp_path: Path, sqlite_url: str):
    ledger = Ledger(sqlite_url)
    done = run_scripted(ledger, repo, tmp_path, FIXED, CHECK)
    ledger.close()
    base = [*TETHER, "gc", "--db", sqlite_url]
    for bad, named in ((["--older-than", "soon"], "--older-than"), (["--status", "running"], "--status")):
        result = subprocess.run([*base, *bad], cwd=repo, capture_output=True, text=True)
        assert result.returncode == 2 and named in result.stderr, result.stderr
    assert branches(repo) == [done["branch"]]
    result = subprocess.run([*base, "--older-than", "0", "--json"], cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert [i["target"] for i in json.loads(result.stdout)["removed"]] == [done["branch"]]
    shown = subprocess.run([*TETHER, "show", done["run_id"], "--db", sqlite_url, "--json"], cwd=repo,
                           capture_output=True, text=True)
    assert json.loads(shown.stdout)["status"] == "succeeded"
