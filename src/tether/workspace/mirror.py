"""Repositories named by URL: each worker keeps, per URL, a mirror (`git clone --mirror`, fetched
before every run) and a checkout made from it, in which the run's worktree is created. So workers
on many machines need no repository at a shared path: only the URL, and credentials for it in
git's own credential helpers (a URL carrying a password is refused, so no secret sits in a task)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tether.workspace.git import GitError, git

MIRRORS_ENV = "TETHER_MIRRORS"
_SCP_LIKE = re.compile(r"^(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9.-]+:(?!//)[^\s]+$")
_SCHEMES = ("https", "http", "ssh", "git", "file")


@dataclass(frozen=True)
class Checkout:
    url: str
    path: Path  # a clone without a working tree whose `origin` is the URL; runs make their worktrees here
    commit: str  # the fetched tip of `branch`: the run's base
    branch: str


def is_url(repo: str) -> bool:
    """Whether a task's repository is a URL (or scp-like host:path) rather than a local path."""
    return "://" in repo or (bool(_SCP_LIKE.match(repo)) and not Path(repo).exists())


def check_url(url: str) -> str:
    """The URL, if git may fetch it: a known transport, no option-like text, no password in it."""
    if url.startswith("-") or any(c in url for c in "\n\r\0"):
        raise GitError(f"{url!r} is not a repository URL")
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES:
            raise GitError(f"repository URL {url!r}: the scheme must be one of {', '.join(_SCHEMES)}")
        if parts.password is not None:
            raise GitError("a repository URL must not carry a password: give the worker's git a credential "
                           "helper instead (it would be stored in the task and every run's log)")
    elif not _SCP_LIKE.match(url):
        raise GitError(f"{url!r} is not a repository URL")
    return url


def mirrors_root() -> Path:
    return Path(os.environ.get(MIRRORS_ENV) or Path.home() / ".cache" / "tether" / "mirrors")


def _folder(url: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"))[:40]
    return f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One fetch at a time per URL on this machine (workers here may share the cache)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _default_branch(mirror: Path) -> str:
    try:
        return git(mirror, "symbolic-ref", "--short", "HEAD").strip()
    except GitError as exc:
        raise GitError(f"the repository at the mirror {mirror} has no default branch") from exc


def checkout(url: str, branch: str | None = None, root: Path | None = None) -> Checkout:
    """Fetch the URL into this machine's mirror (cloning it the first time), bring the checkout up
    to date from the mirror, and return the tip of `branch` (default: the remote's default branch)
    as the base for a run. The checkout's branches (the runs' `tether/*`) are never pruned, and its
    working tree is never used: runs read their policy from the base commit, and work in worktrees."""
    check_url(url)
    folder = (root or mirrors_root()) / _folder(url)
    mirror, work = folder / "mirror.git", folder / "checkout"
    with _locked(folder):
        if not mirror.is_dir():
            staging = Path(tempfile.mkdtemp(prefix="mirror-", dir=folder))
            try:
                git(folder, "clone", "--quiet", "--mirror", "--", url, str(staging / "mirror.git"))
                (staging / "mirror.git").rename(mirror)  # a half-cloned mirror is never left in place
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        else:
            git(mirror, "fetch", "--quiet", "--prune", "origin")
        if not (work / ".git").is_dir():
            git(folder, "clone", "--quiet", "--no-checkout", "--", str(mirror), str(work))
            git(work, "remote", "set-url", "origin", url)  # deliveries push to the URL, not the mirror
        git(work, "fetch", "--quiet", "--prune", str(mirror), "+refs/heads/*:refs/remotes/origin/*")
        chosen = branch or _default_branch(mirror)
        try:
            commit = git(work, "rev-parse", "--verify", f"refs/remotes/origin/{chosen}^{{commit}}").strip()
        except GitError as exc:
            raise GitError(f"{url} has no branch {chosen!r}") from exc
    return Checkout(url, work, commit, chosen)
