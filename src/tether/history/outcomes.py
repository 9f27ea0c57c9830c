"""What became of one change on the default branch, from git alone: merged (by ancestry, or by
patch id for squash and rebase merges) and when; how many of its added lines survive N days later
(`git blame`, renames followed); whether it was reverted; which later commits by others rewrote its
lines within N days (rework after merge)."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

from tether.workspace.git import GitError, git, git_env

DAY = 86400.0


@dataclass(frozen=True)
class Change:
    """A change to follow: `commit` on top of `parent` (a run's delivered commit on its base, or an
    attributed commit of the default branch), with who made it."""
    commit: str
    parent: str
    made_at: float
    label: str  # what it is: a run id, or the attributed commit's subject
    run_id: str | None = None
    author_email: str = ""


@dataclass
class Outcome:
    commit: str
    label: str
    run_id: str | None
    merged: bool = False
    merged_as: str | None = None  # the default branch's commit holding its lines
    how: str | None = None  # "ancestry" or "patch-id"
    merged_at: float | None = None
    hours_to_merge: float | None = None
    added: int = 0
    surviving: int = 0
    rewritten_by_others: int = 0
    reverted_by: str | None = None
    follow_ups: list[str] = field(default_factory=list)  # commits by others that rewrote its lines within N days
    observed_at_days: float = 0.0  # how long after merging the survival was measured

    @property
    def survival(self) -> float | None:
        return self.surviving / self.added if self.merged and self.added else None

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "survival": self.survival}


class History:
    """The default branch of a repository, read once for many changes."""

    def __init__(self, repo: Path, branch: str):
        self.repo, self.branch = repo, branch
        self.tip = git(repo, "rev-parse", f"{branch}^{{commit}}").strip()
        self._patch_ids: dict[str, str | None] = {}

    @cached_property
    def first_parent(self) -> list[tuple[str, float, str, str]]:
        """(commit, commit time, author email, subject) of the branch, oldest first."""
        out = git(self.repo, "log", "--first-parent", "--reverse", "--format=%H%x1f%ct%x1f%ae%x1f%s", self.tip)
        rows = []
        for line in out.splitlines():
            sha, ts, email, subject = line.split("\x1f", 3)
            rows.append((sha, float(ts), email, subject))
        return rows

    @cached_property
    def all_commits(self) -> dict[str, tuple[float, str, str]]:
        """Every commit reachable from the tip: (time, author email, full message)."""
        out = git(self.repo, "log", "--format=%H%x1f%ct%x1f%ae%x1f%B%x1e", self.tip)
        found = {}
        for record in out.split("\x1e"):
            record = record.strip("\n")
            if record:
                sha, ts, email, message = record.split("\x1f", 3)
                found[sha] = (float(ts), email, message)
        return found

    @cached_property
    def patch_ids(self) -> dict[str, str]:
        """patch id -> the first commit of the branch whose diff it is (read only when a change is
        not an ancestor of the branch: a squash or a rebase)."""
        found: dict[str, str] = {}
        for sha, _ts, _email, _subject in self.first_parent:
            patch_id = self.commit_patch_id(sha)
            if patch_id is not None:
                found.setdefault(patch_id, sha)
        return found

    def commit_patch_id(self, sha: str) -> str | None:
        """The patch id of a commit against its first parent (None for a root commit), once."""
        if sha not in self._patch_ids:
            self._patch_ids[sha] = self.patch_id(f"{sha}^", sha) if self._has_parent(sha) else None
        return self._patch_ids[sha]

    def _has_parent(self, sha: str) -> bool:
        try:
            git(self.repo, "rev-parse", "--verify", "--quiet", f"{sha}^")
            return True
        except GitError:
            return False

    def patch_id(self, old: str, new: str) -> str | None:
        diff = subprocess.run(["git", "diff", "--no-ext-diff", "--no-textconv", old, new], cwd=self.repo,
                              capture_output=True, env=git_env(None, self.repo)).stdout
        if not diff:
            return None
        result = subprocess.run(["git", "patch-id", "--stable"], cwd=self.repo, input=diff, capture_output=True,
                                env=git_env(None, self.repo)).stdout.decode().split()
        return result[0] if result else None

    def at(self, when: float) -> str:
        """The branch's commit at a moment (its first-parent history)."""
        before = [sha for sha, ts, _e, _s in self.first_parent if ts <= when]
        return before[-1] if before else self.first_parent[0][0]

    def follow(self, change: Change, days: float, now: float | None = None) -> Outcome:
        now = time.time() if now is None else now
        outcome = Outcome(change.commit, change.label, change.run_id)
        merged_as, how = self._merged(change)
        if merged_as is None:
            return outcome
        merged_at = self._landed_at(merged_as)
        outcome.merged, outcome.merged_as, outcome.how = True, merged_as, how
        outcome.merged_at = merged_at
        outcome.hours_to_merge = round(max(0.0, merged_at - change.made_at) / 3600, 2)
        horizon = min(merged_at + days * DAY, now)
        outcome.observed_at_days = round((horizon - merged_at) / DAY, 2)
        outcome.reverted_by = self._revert_of(merged_as, change.commit, horizon)
        added, surviving, others = self._blame(merged_as, self.at(horizon), change.author_email, merged_at, horizon)
        others.pop(outcome.reverted_by or "", None)  # a revert is counted as one, not as rework
        outcome.added, outcome.surviving = added, surviving
        outcome.rewritten_by_others = sum(others.values())
        outcome.follow_ups = sorted(others)
        return outcome

    def _merged(self, change: Change) -> tuple[str | None, str | None]:
        if change.commit in self.all_commits:
            return change.commit, "ancestry"
        patch_id = self.patch_id(change.parent, change.commit)
        found = self.patch_ids.get(patch_id or "")
        return (found, "patch-id") if found else (None, None)

    @cached_property
    def landings(self) -> dict[str, float]:
        """commit -> when it reached the branch: its own time on the first-parent line, else the
        time of the merge that brought it in."""
        landed = {sha: ts for sha, ts, _email, _subject in self.first_parent}
        for sha, ts, _email, _subject in self.first_parent:
            parents = git(self.repo, "rev-list", "--parents", "-n", "1", sha).split()[1:]
            if len(parents) > 1:
                for brought in git(self.repo, "rev-list", f"^{parents[0]}", *parents[1:]).split():
                    landed.setdefault(brought, ts)
        return landed

    def _landed_at(self, commit: str) -> float:
        return self.landings.get(commit, self.all_commits[commit][0])

    def _revert_of(self, merged_as: str, original: str, horizon: float) -> str | None:
        reverse = self.patch_id(merged_as, f"{merged_as}^")
        for sha, ts, _email, _subject in self.first_parent:
            if ts < self.all_commits[merged_as][0] or ts > horizon or sha == merged_as:
                continue
            message = self.all_commits[sha][2]
            if re.search(rf"This reverts commit ({merged_as}|{original})", message):
                return sha
            if reverse is not None and "revert" in message.lower() and self.commit_patch_id(sha) == reverse:
                return sha
        return None

    def _blame(self, merged_as: str, at: str, author: str, merged_at: float,
               horizon: float) -> tuple[int, int, dict[str, int]]:
        """(lines the change added, still blamed on it at `at`, lines of it rewritten per commit by others)."""
        numstat = git(self.repo, "diff", "--numstat", "-M", f"{merged_as}^", merged_as)
        added = 0
        paths = []
        for line in numstat.splitlines():
            plus, _minus, path = line.split("\t", 2)
            if plus != "-" and int(plus):
                added += int(plus)
                paths.append(_new_path(path))
        renames = _renames(self.repo, merged_as, at)
        surviving = 0
        others: dict[str, int] = {}
        touched_by = _lines_replaced(self.repo, merged_as, at, paths) if at != merged_as else {}
        for path in paths:
            current = renames.get(path, path)
            try:  # only the history since the change: what is older is blamed on the boundary
                porcelain = git(self.repo, "blame", "--line-porcelain", "-M", f"{merged_as}^..{at}", "--", current)
            except GitError:
                continue  # the file is gone
            surviving += sum(1 for line in porcelain.splitlines() if line.startswith(merged_as))
        for sha, count in touched_by.items():
            ts, email, _message = self.all_commits.get(sha, (0.0, "", ""))
            if email != author and merged_at < ts <= horizon:
                others[sha] = count
        return added, surviving, others


def _new_path(numstat_path: str) -> str:
    """The new name in a numstat rename (`a/{x => y}/b` or `x => y`)."""
    if " => " not in numstat_path:
        return numstat_path
    if "{" in numstat_path:
        head, rest = numstat_path.split("{", 1)
        middle, tail = rest.split("}", 1)
        return (head + middle.split(" => ")[1] + tail).replace("//", "/")
    return numstat_path.split(" => ")[1]


def _renames(repo: Path, old: str, new: str) -> dict[str, str]:
    out = git(repo, "diff", "--name-status", "-M", old, new)
    found = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if parts[0].startswith("R") and len(parts) == 3:
            found[parts[1]] = parts[2]
    return found


def _lines_replaced(repo: Path, merged_as: str, at: str, paths: list[str]) -> dict[str, int]:
    """The commits that replaced lines the change added, by how many: `git blame --reverse` says
    until which commit each line lived; the commit after that one changed it. Only the change's own
    lines count (those `git blame` gives to it in its own commit)."""
    replaced: dict[str, int] = {}
    after: dict[str, str | None] = {}
    for path in paths:
        try:
            own = _lines_of(git(repo, "blame", "--line-porcelain", f"{merged_as}^..{merged_as}", "--", path),
                            merged_as)
            porcelain = git(repo, "blame", "--reverse", "--line-porcelain", f"{merged_as}..{at}", "--", path)
        except GitError:
            continue
        for line in porcelain.splitlines():
            header = re.match(r"^([0-9a-f]{40}) \d+ (\d+)", line)
            if header is None or int(header.group(2)) not in own:
                continue
            last_seen = header.group(1)
            if last_seen == at:
                continue  # still there
            if last_seen not in after:
                following = git(repo, "rev-list", "--reverse", "--ancestry-path", f"{last_seen}..{at}").split()
                after[last_seen] = following[0] if following else None
            successor = after[last_seen]
            if successor is not None:
                replaced[successor] = replaced.get(successor, 0) + 1
    return replaced


def _lines_of(porcelain: str, commit: str) -> set[int]:
    """The line numbers `git blame --line-porcelain` gives to `commit`."""
    found = set()
    for line in porcelain.splitlines():
        header = re.match(r"^([0-9a-f]{40}) \d+ (\d+)", line)
        if header is not None and header.group(1) == commit:
            found.add(int(header.group(2)))
    return found
