"""Worktrees on real git: snapshots, rollback, diffs and delivery."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import git
from tether.policy.schema import SandboxPolicy
from tether.workspace.git import head_commit, no_other_git
from tether.workspace.identity import drops_root, hand_over, sandbox_uid
from tether.workspace.sandbox import Sandbox
from tether.workspace.worktree import create_worktree


def test_snapshot_restore_diff_commit(repo: Path):
    base = head_commit(repo)
    wt = create_worktree(repo, "run1", base, ["build/"])
    assert wt.path.is_dir() and wt.branch == "tether/run1"
    base_tree = wt.snapshot()
    assert base_tree == wt.base_tree()
    (wt.path / "new.py").write_text("a\nb\n")
    (wt.path / "raindrops.py").write_text("changed\n")
    (wt.path / "build").mkdir()
    (wt.path / "build" / "out.bin").write_text("ignored")
    (wt.path / "__pycache__").mkdir()
    (wt.path / "__pycache__" / "x.pyc").write_text("ignored")
    tree = wt.snapshot()
    stat = wt.diff(base_tree, tree)
    assert sorted(stat.paths) == ["new.py", "raindrops.py"]
    assert stat.lines == 2 + 1 + 2  # new.py +2; raindrops.py +1 -2
    wt.restore(base_tree)
    assert not (wt.path / "new.py").exists()
    assert (wt.path / "raindrops.py").read_text() == (repo / "raindrops.py").read_text()
    assert wt.snapshot() == base_tree
    (wt.path / "new.py").write_text("kept\n")
    commit = wt.commit(wt.snapshot(), "tether: test\n")
    assert git(repo, "show", "tether/run1:new.py") == "kept\n"
    assert git(repo, "rev-parse", "tether/run1").strip() == commit
    # the worktree belongs to the sandbox user, so git must be told it is safe to read
    assert git(wt.path, "-c", "safe.directory=*", "status", "--porcelain", "--untracked-files=no") == ""
    wt.remove()
    assert not wt.path.exists()
    assert git(repo, "rev-parse", "tether/run1").strip() == commit  # the branch outlives the worktree


def test_the_git_that_does_nothing_is_made_again_when_a_cleaner_took_it():
    folder = Path(no_other_git()["GIT_EXEC_PATH"])
    shutil.rmtree(folder)
    again = Path(no_other_git()["GIT_EXEC_PATH"])
    assert again != folder and (again / "git").is_file()
    ran = subprocess.run([str(again / "git"), "status", "--porcelain=2"], capture_output=True, text=True)
    assert (ran.returncode, ran.stdout) == (0, "")


@pytest.mark.skipif(not drops_root(), reason="the sandbox runs as a user of its own only when Tether is root")
def test_a_restore_hands_what_git_wrote_to_the_sandbox_user_and_walks_nothing_else(repo: Path):
    wt = create_worktree(repo, "run-owners", head_commit(repo), [])
    uid, sandbox = sandbox_uid(wt.path), Sandbox(SandboxPolicy(), wt.path)
    base = wt.snapshot()
    done = sandbox.run("mkdir -p deep/er && echo x > deep/er/new.py && echo changed > raindrops.py && rm LICENSE", 30)
    assert done.exit_code == 0, done.output
    later = wt.snapshot()
    untouched = wt.path / "INSTRUCTIONS.md"
    os.lchown(untouched, 4242, 4242)  # what the restore leaves alone keeps its owner: it is not walked

    wt.restore(base)  # git writes raindrops.py and LICENSE again
    assert {wt.path.joinpath(name).lstat().st_uid for name in ("raindrops.py", "LICENSE")} == {uid}
    assert untouched.lstat().st_uid == 4242 and not (wt.path / "deep").exists()

    wt.restore(later)  # git makes deep/, deep/er/ and the file in them
    made = [wt.path / "deep", wt.path / "deep" / "er", wt.path / "deep" / "er" / "new.py"]
    assert [path.lstat().st_uid for path in made] == [uid] * 3
    assert wt.path.joinpath("raindrops.py").lstat().st_uid == uid
    again = sandbox.run("echo y >> deep/er/new.py && echo y >> raindrops.py && touch deep/er/more.py", 30)
    assert again.exit_code == 0, again.output  # the agent goes on with what the rollback put back
    wt.remove()


@pytest.mark.skipif(not drops_root(), reason="the sandbox runs as a user of its own only when Tether is root")
def test_handing_over_changes_no_link_target_and_keeps_the_pointer_tethers(tmp_path: Path):
    folder, outside = tmp_path / "work", tmp_path / "outside.txt"
    (folder / "a" / "b").mkdir(parents=True)
    (folder / "a" / "b" / "f.py").write_text("x\n")
    (folder / ".git").write_text("gitdir: /somewhere\n")
    outside.write_text("not the sandbox's\n")
    (folder / "a" / "link").symlink_to(outside)
    (folder / "a" / "dirlink").symlink_to(tmp_path)
    hand_over(folder, 4321)
    assert {path.lstat().st_uid for path in folder.rglob("*") if path.name != ".git"} == {4321}
    assert folder.lstat().st_uid == 4321
    assert (folder / ".git").lstat().st_uid == outside.stat().st_uid == tmp_path.stat().st_uid == os.geteuid()


def test_comparing_trees_never_reads_the_users_index(repo: Path):
    """What a step changed is a question about two trees: the user's index (which git would read,
    6 ms at 50,000 files, and which may be locked or broken mid-operation) has no say in it."""
    wt = create_worktree(repo, "run-index", head_commit(repo), [])
    base = wt.snapshot()
    (wt.path / "raindrops.py").write_text("one\ntwo\n")
    (wt.path / "gone.txt").write_text("x\n")
    middle = wt.snapshot()
    (wt.path / "gone.txt").unlink()
    after = wt.snapshot()
    index = repo / ".git" / "index"
    saved = index.read_bytes()
    index.write_bytes(b"DIRC not an index at all")
    try:
        assert sorted(wt.diff(base, middle).paths) == ["gone.txt", "raindrops.py"]
        assert wt.deleted(middle, after) == ["gone.txt"]
        assert "+two" in wt.patch(base, middle, ["raindrops.py"], 10_000)
        wt.restore(base)
        assert wt.snapshot() == base
    finally:
        index.write_bytes(saved)
