"""Clean up after finished runs: their worktrees and `tether/*` branches by age and status, and
project environments nobody used for a while. The event log is never touched, nor a branch that
left this machine (it was delivered, it has an upstream, or a remote-tracking ref holds its tip),
nor a run that can still go on (running, held, awaiting approval)."""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tether.ledger import Ledger
from tether.ledger import events as ev
from tether.ledger.queries import held_reason
from tether.paths import tether_dir
from tether.workspace.git import GitError, git
from tether.workspace.project import cache_root
from tether.workspace.worktree import remove_worktree

FINISHED = ("succeeded", "failed", "stopped")


@dataclass(frozen=True)
class Item:
    kind: str  # "worktree", "branch" or "environment"
    target: str
    run_id: str | None
    reason: str


@dataclass
class Collection:
    removed: list[Item] = field(default_factory=list)
    kept: list[Item] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[dict[str, str | None]]]:
        return {"removed": [asdict(i) for i in self.removed], "kept": [asdict(i) for i in self.kept]}


def parse_age(text: str) -> float:
    """Seconds in "30m", "12h", "7d" or "0"; ValueError naming the text otherwise."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    text = text.strip().lower()
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"not an age: {text!r} (use e.g. 30m, 12h, 7d)") from None
    if value < 0:
        raise ValueError(f"not an age: {text!r} (negative)")
    return value * units[unit]


def collect(ledger: Ledger, repo: Path, older_than_s: float, statuses: tuple[str, ...] = FINISHED,
            dry_run: bool = False) -> Collection:
    """Remove the worktrees and branches of this repository's runs that finished with one of
    `statuses` more than `older_than_s` ago."""
    unknown = sorted(set(statuses) - set(FINISHED))
    if unknown:
        raise ValueError(f"cannot collect runs that are {', '.join(unknown)}: only {', '.join(FINISHED)} "
                         "runs are finished")
    result = Collection()
    cutoff = time.time() - older_than_s
    runs = {run.id: run for run in ledger.list_runs(limit=None, repo=str(repo))}
    for run_id, refs, worktrees in _run_artifacts(repo):
        run = runs.get(run_id)
        if run is None:
            continue  # not a run of this store: someone else's to collect
        held = run.status == "stopped" and held_reason(ledger.events(run.id)) is not None  # Ctrl-C
        why_kept = ("it can still go on" if held or run.status not in FINISHED
                    else f"it is {run.status}" if run.status not in statuses
                    else "it finished too recently" if run.updated_at > cutoff else None)
        for path in worktrees:
            item = Item("worktree", str(path), run_id, why_kept or f"{run.status} run")
            if why_kept is None and not dry_run:
                remove_worktree(repo, path)
            (result.kept if why_kept else result.removed).append(item)
        delivered = _delivered(ledger, run_id)
        for ref in refs:
            reason = why_kept or delivered or _left_this_machine(repo, ref)
            item = Item("branch", ref, run_id, reason or f"{run.status} run")
            if reason is None and not dry_run:
                git(repo, "branch", "-D", "--quiet", ref)
            (result.kept if reason else result.removed).append(item)
    return result


def collect_environments(older_than_s: float, dry_run: bool = False) -> Collection:
    """Remove cached project environments (any repository's) unused for `older_than_s`; one being
    built or checked right now (its lock held) is kept."""
    result = Collection()
    root = cache_root()
    if not root.is_dir():
        return result
    cutoff = time.time() - older_than_s
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        marker = folder / ".complete"
        last_used = marker.stat().st_mtime if marker.is_file() else folder.stat().st_mtime
        if last_used > cutoff:
            result.kept.append(Item("environment", str(folder), None, "used too recently"))
            continue
        with folder.with_name(folder.name + ".lock").open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                result.kept.append(Item("environment", str(folder), None, "in use"))
                continue
            if not dry_run:
                shutil.rmtree(folder)
        result.removed.append(Item("environment", str(folder), None, "unused"))
    return result


def _run_artifacts(repo: Path) -> list[tuple[str, list[str], list[Path]]]:
    """(run id, its branches, its worktrees) for every `tether/*` branch or Tether worktree; a
    role's branch `tether/<run>.<role>` belongs to its run."""
    refs: dict[str, list[str]] = {}
    for ref in git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/tether/").split():
        refs.setdefault(ref.removeprefix("tether/").split(".")[0], []).append(ref)
    trees: dict[str, list[Path]] = {}
    root = tether_dir(repo) / "worktrees"
    for line in git(repo, "worktree", "list", "--porcelain").splitlines():
        path = Path(line.removeprefix("worktree ")) if line.startswith("worktree ") else None
        if path is not None and path.parent == root:
            trees.setdefault(path.name.split(".")[0], []).append(path)
    return [(run_id, refs.get(run_id, []), trees.get(run_id, [])) for run_id in sorted({*refs, *trees})]


def _delivered(ledger: Ledger, run_id: str) -> str | None:
    """Why a run's branch must stay because its log says it was pushed (to a remote named by URL
    the branch has neither an upstream nor a remote-tracking ref)."""
    for event in reversed(ledger.events(run_id)):
        if isinstance(event.data, ev.Delivered):
            return f"it was delivered to {event.data.remote} ({event.data.ref})"
    return None


def _left_this_machine(repo: Path, ref: str) -> str | None:
    """Why a branch must stay because it was pushed (or is tracked for review), else None."""
    with contextlib.suppress(GitError):
        upstream = git(repo, "rev-parse", "--abbrev-ref", f"{ref}@{{upstream}}").strip()
        return f"it tracks {upstream}"
    remotes = git(repo, "branch", "--remotes", "--contains", ref, "--format=%(refname:short)").split()
    return f"it was pushed ({remotes[0]})" if remotes else None
