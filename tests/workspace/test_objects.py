"""The snapshot of a file write, made in-process, is always the tree a full `git add -A` would make;
where it cannot be sure (a new file, attributes, line-ending conversion, not a regular file) it
takes the full snapshot."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.conftest import git
from tests.workspace.conftest import full_snapshot, small_worktree
from tether.workspace.worktree import Worktree

FILES = ["a.py", "src/pkg/mod.py", "src/pkg/deep/x.txt", "src/other.py", "docs/readme.md", "run.sh"]


@pytest.fixture
def worktree(tmp_path: Path) -> Worktree:
    return small_worktree(tmp_path, FILES)


def test_random_writes_give_the_tree_a_full_snapshot_gives(worktree: Worktree, monkeypatch: pytest.MonkeyPatch):
    staged: list[int] = []
    stage_all = Worktree._stage_all
    monkeypatch.setattr(Worktree, "_stage_all", lambda self: staged.append(1) or stage_all(self))
    chance = random.Random(7)
    tree = worktree.snapshot()
    for step in range(60):
        path = chance.choice(FILES)
        content = chance.choice(["x = 1\n", "x = 2\n", f"step {step}\n", "", "é ✓\n" * 3])
        (worktree.path / path).write_text(content)
        if chance.random() < 0.2:
            os.chmod(worktree.path / path, chance.choice([0o644, 0o755]))
        before = len(staged)
        fast = worktree.snapshot_file(tree, path)
        assert len(staged) == before, "the write took the full snapshot"
        assert fast == full_snapshot(worktree), (step, path)
        assert git(worktree.path, "-c", "safe.directory=*", "cat-file", "-t", fast).strip() == "tree"
        tree = fast


def test_an_unchanged_write_keeps_the_tree(worktree: Worktree):
    tree = worktree.snapshot()
    (worktree.path / "a.py").write_text("# a.py\n")
    assert worktree.snapshot_file(tree, "a.py") == tree


@pytest.mark.parametrize("case", ["new file", "attributes", "autocrlf", "symlink", "folder"])
def test_where_it_cannot_be_sure_it_takes_the_full_snapshot(worktree: Worktree, case: str):
    tree = worktree.snapshot()
    path = "src/pkg/mod.py"
    if case == "new file":
        path = "src/pkg/new.py"
        (worktree.path / path).write_text("new\n")
    elif case == "attributes":
        (worktree.path / "src" / ".gitattributes").write_text("*.py text eol=crlf\n")
        (worktree.path / path).write_text("a\nb\n")
    elif case == "autocrlf":
        git(worktree.repo, "config", "core.autocrlf", "true")
        (worktree.path / path).write_text("a\r\nb\r\n")
    elif case == "symlink":
        (worktree.path / path).unlink()
        (worktree.path / path).symlink_to("../other.py")
    else:
        (worktree.path / path).unlink()
        (worktree.path / path).mkdir()
        (worktree.path / path / "inner.py").write_text("y\n")
    expected = full_snapshot(worktree)
    assert worktree.snapshot_file(tree, path) == expected
