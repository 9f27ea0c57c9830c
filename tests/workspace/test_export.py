"""A clean export of a tree (where required checks run): what a tree holds is written, and a
crafted tree cannot make the export write outside it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tether.workspace.export import export_tree
from tether.workspace.git import GitError


def git(repo: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(["git", *args], cwd=repo, input=stdin, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    return repo


def blob(repo: Path, content: str) -> str:
    return git(repo, "hash-object", "-w", "--stdin", stdin=content)


def mktree(repo: Path, *entries: tuple[str, str, str, str]) -> str:
    return git(repo, "mktree", stdin="".join(f"{mode} {kind} {sha}\t{name}\n" for mode, kind, sha, name in entries))


def test_a_tree_is_written_as_it_is(repo: Path, tmp_path: Path):
    script, text = blob(repo, "#!/bin/sh\necho hi\n"), blob(repo, "text\n")
    deep = mktree(repo, ("100644", "blob", text, "d.txt"))
    middle = mktree(repo, ("040000", "tree", deep, "c"), ("100644", "blob", text, "b.txt"))
    commit = git(repo, "hash-object", "-t", "commit", "-w", "--stdin",
                 stdin=f"tree {deep}\nauthor a <a@a> 0 +0000\ncommitter a <a@a> 0 +0000\n\nx\n")
    tree = mktree(repo, ("100755", "blob", script, "run.sh"), ("040000", "tree", middle, "a"),
                  ("120000", "blob", blob(repo, "a/b.txt"), "link"), ("160000", "commit", commit, "vendor"))
    dest = tmp_path / "export"
    assert export_tree(repo, tree, dest) == 4
    assert (dest / "a" / "c" / "d.txt").read_text() == "text\n" and (dest / "a" / "b.txt").read_text() == "text\n"
    assert os.access(dest / "run.sh", os.X_OK) and not os.access(dest / "a" / "b.txt", os.X_OK)
    assert os.readlink(dest / "link") == "a/b.txt"
    assert (dest / "vendor").is_dir() and list((dest / "vendor").iterdir()) == []


def test_a_crafted_tree_cannot_write_through_its_own_link(repo: Path, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    inner = mktree(repo, ("100644", "blob", blob(repo, "pwned\n"), "f.txt"))
    # two entries named "a": a link to a folder outside, then a folder whose file would go through it
    tree = mktree(repo, ("120000", "blob", blob(repo, str(outside)), "a"), ("040000", "tree", inner, "a"))
    with pytest.raises(GitError, match="leads outside the export"):
        export_tree(repo, tree, tmp_path / "export")
    assert list(outside.iterdir()) == []


def test_a_crafted_tree_cannot_climb_out_of_the_export(repo: Path, tmp_path: Path):
    inner = mktree(repo, ("100644", "blob", blob(repo, "pwned\n"), "f.txt"))
    tree = mktree(repo, ("040000", "tree", inner, ".."))
    dest = tmp_path / "box" / "export"
    dest.parent.mkdir()
    with pytest.raises(GitError, match="not a plain path"):
        export_tree(repo, tree, dest)
    assert not (dest.parent / "f.txt").exists() and list(dest.iterdir()) == []
