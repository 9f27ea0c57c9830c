"""A run's git worktree: creation, tree snapshots, rollback, diff stats, delivery as a commit."""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tether.paths import tether_dir
from tether.workspace.git import GitError, git

# Caches and build output that tools leave behind: never part of a snapshot, a cap or a commit.
DEFAULT_IGNORES = [
    "__pycache__/", "*.py[cod]", ".pytest_cache/", ".mypy_cache/", ".ruff_cache/",
    ".hypothesis/", ".coverage", "*.egg-info/", ".tox/", ".venv/", "node_modules/",
]


@contextmanager
def worktree_lock(repo: Path) -> Iterator[None]:
    """Serialise worktree add/remove in one repository across processes: git deletes
    .git/worktrees when its last entry goes, under the feet of a concurrent add."""
    path = tether_dir(repo) / "worktrees.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class FileChange:
    path: str
    added: int
    removed: int


@dataclass(frozen=True)
class DiffStat:
    files: list[FileChange]

    @property
    def lines(self) -> int:
        return sum(change.added + change.removed for change in self.files)

    @property
    def paths(self) -> list[str]:
        return [change.path for change in self.files]

    def as_dict(self) -> dict[str, int]:
        return {"files": len(self.files), "added": sum(c.added for c in self.files),
                "removed": sum(c.removed for c in self.files)}


@dataclass(frozen=True)
class Worktree:
    repo: Path
    path: Path
    branch: str
    base_commit: str
    exclude_file: Path

    def _git(self, *args: str) -> str:
        return git(self.path, "-c", f"core.excludesFile={self.exclude_file}", *args)

    def snapshot(self) -> str:
        """Stage everything (in the worktree's own index) and return the tree id."""
        self._git("add", "-A")
        return self._git("write-tree").strip()

    def restore(self, tree: str) -> None:
        """Make the worktree's files exactly `tree` (files created since are removed)."""
        self.snapshot()
        self._git("read-tree", "--reset", "-u", tree)

    def base_tree(self) -> str:
        return git(self.repo, "rev-parse", f"{self.base_commit}^{{tree}}").strip()

    def diff(self, from_tree: str, to_tree: str) -> DiffStat:
        if from_tree == to_tree:
            return DiffStat([])
        out = git(self.repo, "diff-tree", "-r", "--no-renames", "--numstat", "-z", from_tree, to_tree)
        changes = []
        for record in filter(None, out.split("\0")):
            added, removed, path = record.split("\t", 2)
            # Binary files report "-": count them as one changed line so caps still see them.
            changes.append(FileChange(path, int(added) if added != "-" else 1,
                                      int(removed) if removed != "-" else 0))
        return DiffStat(changes)

    def commit(self, tree: str, message: str) -> str:
        """Record `tree` as a commit on the run's branch (no hooks, no user identity needed)."""
        parent = git(self.repo, "rev-parse", f"refs/heads/{self.branch}").strip()
        if git(self.repo, "rev-parse", f"{parent}^{{tree}}").strip() == tree:
            return parent
        commit = git(self.repo, "commit-tree", tree, "-p", parent, "-F", "-", input_text=message).strip()
        git(self.repo, "update-ref", f"refs/heads/{self.branch}", commit, parent)
        # The worktree's HEAD is the branch; keep its index in step so it reads as clean.
        self._git("read-tree", tree)
        return commit

    def remove(self) -> None:
        with worktree_lock(self.repo):
            try:
                git(self.repo, "worktree", "remove", "--force", str(self.path))
            except GitError:
                shutil.rmtree(self.path, ignore_errors=True)
                git(self.repo, "worktree", "prune")
        self.exclude_file.unlink(missing_ok=True)


def create_worktree(repo: Path, run_id: str, base_commit: str, ignores: list[str]) -> Worktree:
    root = tether_dir(repo) / "worktrees"
    root.mkdir(exist_ok=True)
    worktree = Worktree(repo=repo, path=root / run_id, branch=f"tether/{run_id}", base_commit=base_commit,
                        exclude_file=root / f"{run_id}.exclude")
    worktree.exclude_file.write_text("\n".join([*DEFAULT_IGNORES, *ignores]) + "\n")
    with worktree_lock(repo):
        git(repo, "worktree", "add", "--quiet", "-b", worktree.branch, str(worktree.path), base_commit)
    return worktree


def open_worktree(repo: Path, run_id: str, base_commit: str) -> Worktree:
    root = tether_dir(repo) / "worktrees"
    return Worktree(repo=repo, path=root / run_id, branch=f"tether/{run_id}", base_commit=base_commit,
                    exclude_file=root / f"{run_id}.exclude")


def reattach_worktree(worktree: Worktree, ignores: list[str]) -> Worktree:
    """Recreate a run's worktree (lost with its machine, say) on the run's existing branch."""
    worktree.path.parent.mkdir(parents=True, exist_ok=True)
    worktree.exclude_file.write_text("\n".join([*DEFAULT_IGNORES, *ignores]) + "\n")
    with worktree_lock(worktree.repo):
        git(worktree.repo, "worktree", "prune")
        git(worktree.repo, "worktree", "add", "--quiet", str(worktree.path), worktree.branch)
    return worktree
