"""A restore (a refused step rolled back, an attempt started again) writes only the paths where the
tree differs, in-process, and leaves the worktree as git's own checkout would: each compared with a
full `git add -A`. What it cannot write as git would goes to git; nothing is written through a link
or into a file outside the worktree."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.conftest import git
from tests.workspace.conftest import full_snapshot, small_worktree
from tether.policy.schema import SandboxPolicy
from tether.workspace.checkout import Change, put_back, read_blobs
from tether.workspace.git import GitError, blob_contents
from tether.workspace.objects import Unsure
from tether.workspace.sandbox import Sandbox
from tether.workspace.worktree import Worktree

FILES = ["a.py", "src/pkg/mod.py", "src/pkg/deep/x.txt", "src/other.py", "docs/readme.md", "run.sh"]


@pytest.fixture
def worktree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Worktree:
    monkeypatch.setenv("TETHER_FULL_SNAPSHOTS", "0")
    return small_worktree(tmp_path, FILES, {".gitignore": "*.log\nbuild/\n"})


@pytest.fixture
def git_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The git commands the worktree runs on its own index."""
    calls: list[str] = []
    real = Worktree._git
    monkeypatch.setattr(Worktree, "_git", lambda self, *args, **kw: calls.append(args[0]) or real(self, *args, **kw))
    return calls


def step(worktree: Worktree, command: str) -> str:
    result = Sandbox(SandboxPolicy(), worktree.path).run(command, 30)
    assert result.exit_code == 0, result.output
    return worktree.snapshot()


EVERY_KIND = ("echo changed >> a.py && rm src/other.py && mkdir -p fresh/inner && echo new > fresh/inner/n.py"
              " && chmod +x docs/readme.md && rm run.sh && ln -s a.py run.sh && rm -r src/pkg/deep"
              " && echo now-a-file > src/pkg/deep && echo ignored > trace.log")


def test_a_rollback_of_every_kind_of_change_is_written_in_process_and_is_the_tree(worktree: Worktree,
                                                                                   git_calls: list[str]):
    base = worktree.snapshot()
    later = step(worktree, EVERY_KIND)
    git_calls.clear()
    worktree.restore(base)
    assert "read-tree" not in git_calls and "add" not in git_calls  # no checkout, no walk
    assert full_snapshot(worktree) == base
    root = worktree.path
    assert not (root / "fresh").exists()  # the folders it emptied are gone, as with git's checkout
    assert (root / "src" / "pkg" / "deep").is_dir() and not (root / "run.sh").is_symlink()
    assert os.stat(root / "run.sh").st_mode & stat.S_IXUSR
    assert not os.stat(root / "docs" / "readme.md").st_mode & stat.S_IXUSR
    assert (root / "trace.log").exists()  # an ignored file stays, as git leaves it
    worktree.restore(later)  # and forward again
    assert "read-tree" not in git_calls
    assert full_snapshot(worktree) == later and (root / "run.sh").is_symlink()
    assert worktree.snapshot() == later  # the next step starts from it, in-process too


def test_a_file_with_a_second_name_outside_keeps_what_it_holds(worktree: Worktree, tmp_path: Path):
    base = worktree.snapshot()
    (worktree.path / "a.py").write_text("the agent's\n")
    outside = tmp_path / "outside.py"
    os.link(worktree.path / "a.py", outside)
    worktree.snapshot()
    worktree.restore(base)
    assert outside.read_text() == "the agent's\n"  # a new file was written, not the linked one rewritten
    assert full_snapshot(worktree) == base


def test_nothing_is_written_beyond_a_link_on_the_way(tmp_path: Path, worktree: Worktree):
    outside = tmp_path / "outside"
    outside.mkdir()
    (worktree.path / "via").symlink_to(outside)
    sha = git(worktree.repo, "rev-parse", "HEAD:a.py").strip()
    blob = read_blobs(worktree.repo, {sha})
    assert blob[sha] == b"# a.py\n"
    written: list[Path] = []
    with pytest.raises(Unsure):
        put_back(worktree.path, [Change("via/a.py", "100644", sha)], blob, written)
    with pytest.raises(Unsure):
        put_back(worktree.path, [Change("via/a.py", None, None)], blob, written)
    assert list(outside.iterdir()) == [] and written == []


def test_what_only_git_can_write_goes_to_git_and_ends_the_same(worktree: Worktree, git_calls: list[str]):
    base = worktree.snapshot()
    # a folder where the tree has a file, holding an ignored file git's checkout removes with it
    later = step(worktree, "rm run.sh && mkdir run.sh && echo x > run.sh/kept.log")
    git_calls.clear()
    worktree.restore(base)
    assert "read-tree" in git_calls
    assert full_snapshot(worktree) == base and (worktree.path / "run.sh").is_file()
    assert worktree.snapshot() == base
    worktree.restore(later)
    assert full_snapshot(worktree) == later


def test_a_repository_inside_the_worktree_is_recorded_as_it_is_after_a_restore(worktree: Worktree):
    base = worktree.snapshot()
    step(worktree, "mkdir inner && cd inner && git init -q && echo 1 > f && git add f"
                   " && git -c user.email=a@b -c user.name=a commit -qm one")
    first = worktree.snapshot()
    step(worktree, "cd inner && echo 2 > f && git -c user.email=a@b -c user.name=a commit -qam two")
    worktree.restore(first)  # git cannot move the inner repository back: it stays at its own commit
    assert worktree.snapshot() == full_snapshot(worktree) != first
    worktree.restore(base)
    assert worktree.snapshot() == full_snapshot(worktree)


def test_a_wrong_put_back_is_caught_by_its_check_and_git_mends_it(worktree: Worktree, monkeypatch: pytest.MonkeyPatch,
                                                                   git_calls: list[str]):
    base = worktree.snapshot()
    step(worktree, "echo changed >> a.py && echo new > made.py")
    monkeypatch.setattr("tether.workspace.worktree.put_back",
                        lambda root, changes, blobs, written: None)  # writes nothing, says nothing
    worktree.restore(base)
    assert "read-tree" in git_calls
    assert full_snapshot(worktree) == base and not (worktree.path / "made.py").exists()


def test_without_a_watch_a_restore_stages_once_and_checks_out_with_git(tmp_path: Path, git_calls: list[str],
                                                                       monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TETHER_FULL_SNAPSHOTS", "1")
    worktree = small_worktree(tmp_path, FILES)
    base = worktree.snapshot()
    (worktree.path / "a.py").write_text("changed\n")
    (worktree.path / "made.py").write_text("new\n")
    git_calls.clear()
    worktree.restore(base)
    assert git_calls.count("add") == 1 and "read-tree" in git_calls
    assert full_snapshot(worktree) == base and not (worktree.path / "made.py").exists()


def test_blobs_come_in_the_order_asked_and_a_missing_one_is_an_error(worktree: Worktree):
    shas = [git(worktree.repo, "rev-parse", f"HEAD:{name}").strip() for name in ("run.sh", "a.py", "run.sh")]
    assert list(blob_contents(worktree.repo, shas)) == [b"# run.sh\n", b"# a.py\n", b"# run.sh\n"]
    early = blob_contents(worktree.repo, shas * 2000)  # more than a pipe holds
    assert next(early) == b"# run.sh\n"
    early.close()  # stops git and the thread feeding it, without reading the rest
    with pytest.raises(GitError, match="not a blob"):
        read_blobs(worktree.repo, {shas[0], "0" * 40})
