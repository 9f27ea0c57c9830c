"""A small repository's worktree, and the full snapshot every faster snapshot is compared with."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import git
from tether.workspace.git import GitError
from tether.workspace.git import git as tether_git
from tether.workspace.worktree import Worktree, create_worktree


def small_worktree(tmp_path: Path, files: list[str], extra: dict[str, str] | None = None) -> Worktree:
    """A run's worktree of a repository holding `files` (each its own name as content), `extra`
    files as given, and an executable run.sh."""
    repo = tmp_path / "repo"
    for name, content in {**{name: f"# {name}\n" for name in files}, **(extra or {})}.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(content)
    (repo / "run.sh").chmod(0o755)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=d@e", "-c", "user.name=d", "commit", "-qm", "base")
    return create_worktree(repo, "run1", git(repo, "rev-parse", "HEAD").strip(), [])


def index_copy(worktree: Worktree) -> Path:
    """A copy of the worktree's index as the run's snapshots left it (a split index finds its shared
    part beside it): where they were written in-process, the index git would have staged them into
    (the last snapshot's tree, with the stat data of what matches)."""
    copy = worktree.git_dir / "index-before-step"
    shutil.copyfile(worktree.git_dir / "index", copy)
    memory = worktree._memory
    if memory.index_behind and memory.tree is not None:
        tether_git(worktree.path, "read-tree", "--reset", memory.tree,
                   env={"GIT_DIR": str(worktree.git_dir), "GIT_WORK_TREE": str(worktree.path),
                        "GIT_INDEX_FILE": str(copy)})
    return copy


def full_snapshot(worktree: Worktree, index: Path | None = None) -> str:
    """`git add -A` into an index of its own: from nothing (what the worktree holds, by git), or
    from a copy of the run's index (what a full snapshot of the run would stage: files it tracks
    stay tracked when a new ignore rule covers them)."""
    if index is None:
        index = worktree.git_dir / "full-snapshot-index"
        index.unlink(missing_ok=True)
    env = {"GIT_DIR": str(worktree.git_dir), "GIT_WORK_TREE": str(worktree.path), "GIT_INDEX_FILE": str(index)}
    config = ["-c", f"core.excludesFile={worktree.exclude_file}"]
    try:
        tether_git(worktree.path, *config, "add", "-A", "--ignore-errors", env=env)
    except GitError as exc:  # a repository with no commit in the worktree: git says so, as the run's does
        if "does not have a commit checked out" not in str(exc):
            raise
    return tether_git(worktree.path, *config, "write-tree", env=env).strip()
