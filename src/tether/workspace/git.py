"""Thin wrapper over the git CLI with errors that say which command failed and why."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Generator
from pathlib import Path
from typing import IO

from tether.errors import TetherError


class GitError(TetherError):
    pass


# Config that makes git run a program of its choosing. Tether's own git runs outside the sandbox,
# in worktrees the agent writes: none of it may run there, whoever set it.
_NO_EXECUTION = {
    "core.fsmonitor": "false",
    "core.hooksPath": "/dev/null",
    "protocol.ext.allow": "never",
    "commit.gpgSign": "false",
    "diff.external": "",
    "safe.directory": "*",  # the agent's files belong to the sandbox user; the git dir is found, not discovered
}
# The programs git runs for a path because an attribute names a driver (`*.dat filter=x` runs
# filter.x.clean): the attributes come from files the agent writes (.gitattributes), so every driver
# the configuration defines is switched off for Tether's own git, whatever the attributes say. An
# empty filter is no filter to git, and a filter that was "required" is not; an empty diff command
# fails the porcelain diff (Tether uses none); a merge driver becomes git's own three-way text merge.
_OFF = {"required": "false", "driver": "git merge-file --marker-size=%L %A %O %B"}
_DRIVER_KEYS = re.compile(r"^(filter\..+\.(clean|smudge|process|required)|diff\..+\.(command|textconv)|"
                          r"merge\..+\.driver)$", re.IGNORECASE)
# Identity and config for commands Tether runs itself: never the user's hooks, signing or pager.
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Tether",
    "GIT_AUTHOR_EMAIL": "tether@localhost",
    "GIT_COMMITTER_NAME": "Tether",
    "GIT_COMMITTER_EMAIL": "tether@localhost",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
}


_stub_lock = threading.Lock()
_stub_folder: list[Path] = []


def no_other_git() -> dict[str, str]:
    """Environment under which git starts no other git: its exec path holds a `git` that does nothing.
    `git add` runs `git status` inside every repository it finds in a worktree, to see whether it is
    dirty; that repository's config and attributes are the agent's, and can name a filter no setting
    of Tether's switches off (its name is unknown). Tether's snapshots need only the repository's
    HEAD, which git reads itself."""
    with _stub_lock:
        if not _stub_folder or not (_stub_folder[0] / "git").is_file():  # made again if a cleaner took it
            folder = Path(tempfile.mkdtemp(prefix="tether-git-"))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            stub = folder / "git"
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o500)
            _stub_folder[:] = [folder]
        return {"GIT_EXEC_PATH": str(_stub_folder[0])}


def _inherited() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("GIT_")}


def git_env(extra: dict[str, str] | None = None, cwd: Path | None = None,
            config: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without its own GIT_* settings (a GIT_DIR inherited from a hook
    would point Tether elsewhere), plus Tether's identity, the config above and `config`, with every
    driver configured for `cwd`'s repository switched off. Config goes through the environment, so
    a value such as an authorization header never appears in a process listing."""
    git_dir = (extra or {}).get("GIT_DIR")
    settings = {**(_drivers_off(cwd, git_dir) if cwd is not None else {}), **_NO_EXECUTION, **(config or {})}
    entries = {"GIT_CONFIG_COUNT": str(len(settings)),
               **{f"GIT_CONFIG_KEY_{i}": key for i, key in enumerate(settings)},
               **{f"GIT_CONFIG_VALUE_{i}": value for i, value in enumerate(settings.values())}}
    return {**_inherited(), **_GIT_ENV, **entries, **(extra or {})}


_drivers_cache: dict[tuple[str, tuple[tuple[str, float], ...]], dict[str, str]] = {}
_drivers_lock = threading.Lock()
_config_dirs: dict[tuple[str, str | None], str] = {}


def _plain_env(git_dir: str | None) -> dict[str, str]:
    """For reading config: Tether's identity, and the git dir the real command will use (never one
    discovered from a worktree's `.git` file, which the agent may have rewritten)."""
    return {**_inherited(), **_GIT_ENV, **({"GIT_DIR": git_dir} if git_dir else {})}


def user_git_folder() -> Path:
    """The user's own git folder (its `config`, `attributes`, `ignore`): $XDG_CONFIG_HOME/git."""
    home = Path(os.environ.get("HOME") or "/")
    return Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "git"


def _config_signature(cwd: Path, git_dir: str | None) -> tuple[str, tuple[tuple[str, float], ...]]:
    """What the driver settings of `cwd` depend on: the repository's git dir and when each config
    file that can define them last changed."""
    key = (str(cwd), git_dir)
    if key not in _config_dirs:
        found = subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"], cwd=cwd,
                               capture_output=True, text=True, env=_plain_env(git_dir))
        _config_dirs[key] = found.stdout.strip() if found.returncode == 0 else ""
    common = _config_dirs[key]
    home = Path(os.environ.get("HOME") or "/")
    files = ["/etc/gitconfig", str(home / ".gitconfig"), str(user_git_folder() / "config")]
    if common:
        files.append(os.path.join(common, "config"))
    stamps = []
    for name in files:
        try:
            stamps.append((name, os.stat(name).st_mtime))
        except OSError:
            stamps.append((name, -1.0))
    return common or str(cwd), tuple(stamps)


def _drivers_off(cwd: Path, git_dir: str | None = None) -> dict[str, str]:
    """Config that switches off every filter, diff and merge driver defined for `cwd`."""
    signature = _config_signature(cwd, git_dir)
    with _drivers_lock:
        if signature in _drivers_cache:
            return _drivers_cache[signature]
    listing = subprocess.run(["git", "config", "--null", "--name-only", "--list"], cwd=cwd, capture_output=True,
                             text=True, env=_plain_env(git_dir))
    off = {name: _OFF.get(name.lower().rsplit(".", 1)[1], "")
           for name in filter(None, listing.stdout.split("\0")) if _DRIVER_KEYS.match(name)}
    with _drivers_lock:
        _drivers_cache[signature] = off
    return off


# What compares trees needs no index, but git reads the index when there is one (for attributes):
# 6 ms a command at 50,000 files. A path nobody can create stands for an empty one.
NO_INDEX = {"GIT_INDEX_FILE": "/proc/self/tether-no-index"}


def git(cwd: Path, *args: str, input_text: str | None = None, env: dict[str, str] | None = None,
        config: dict[str, str] | None = None, succeeds: tuple[int, ...] = (0,)) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        input=input_text,
        capture_output=True,
        text=True,
        env=git_env(env, cwd, config),
    )
    if result.returncode not in succeeds:
        raise GitError(f"git {' '.join(args)} failed in {cwd}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def git_bytes(cwd: Path, *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> bytes:
    """A git command's output as bytes (a blob as it is stored, names that are not UTF-8)."""
    result = subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, env=git_env(env, cwd))
    if result.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed in {cwd}: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def blob_contents(repo: Path, shas: list[str]) -> Generator[bytes, None, None]:
    """Each blob's content, in the order given, streamed from one `git cat-file --batch` (fed from
    a thread, so a long list never blocks on a full pipe). Close the iterator to stop early."""
    process = subprocess.Popen(["git", "cat-file", "--batch"], cwd=repo, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, env=git_env(None, repo))
    assert process.stdin is not None and process.stdout is not None
    feeder = threading.Thread(target=_feed, args=(process.stdin, shas), daemon=True)
    feeder.start()
    try:
        for sha in shas:
            header = process.stdout.readline().split()
            if len(header) != 3 or header[0].decode() != sha or header[1] != b"blob":
                raise GitError(f"git cat-file --batch: {sha} is not a blob in {repo}: {b' '.join(header)!r}")
            yield process.stdout.read(int(header[2]))
            process.stdout.read(1)  # the newline after each object
    finally:
        process.stdout.close()
        process.wait()
        feeder.join()


def _feed(stdin: IO[bytes], shas: list[str]) -> None:
    try:
        for start in range(0, len(shas), 1024):
            stdin.write("".join(f"{sha}\n" for sha in shas[start:start + 1024]).encode())
        stdin.close()
    except BrokenPipeError:
        pass


def current_branch(repo: Path) -> str | None:
    """The branch checked out in `repo`; None on a detached HEAD."""
    try:
        return git(repo, "symbolic-ref", "--quiet", "--short", "HEAD").strip() or None
    except GitError:
        return None


def repo_root(path: Path) -> Path:
    try:
        return Path(git(path, "rev-parse", "--show-toplevel").strip())
    except GitError as exc:
        raise GitError(f"{path} is not inside a git repository") from exc
    except FileNotFoundError as exc:
        raise GitError(f"{path} does not exist") from exc


def head_commit(repo: Path) -> str:
    try:
        return git(repo, "rev-parse", "--verify", "HEAD^{commit}").strip()
    except GitError as exc:
        raise GitError(f"{repo} has no commits yet; commit something for the agent to start from") from exc


def show_file(repo: Path, commit: str, path: str) -> str | None:
    """A file's text at a commit, or None when it is not there."""
    try:
        return git(repo, "show", f"{commit}:{path}")
    except GitError:
        return None


def merge_commits(repo: Path, ours: str, theirs: str) -> tuple[str, list[str]]:
    """Three-way merge of two commits without touching any worktree: (the merged tree, the paths
    that conflict). A conflicted path holds the usual conflict markers in that tree."""
    args = ["merge-tree", "--write-tree", "--name-only", "--no-messages", ours, theirs]
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, env=git_env(None, repo))
    if result.returncode not in (0, 1):  # 1 means "merged, with conflicts"
        raise GitError(f"git {' '.join(args)} failed in {repo}: {result.stderr.strip()}")
    tree, *conflicts = [line for line in result.stdout.split("\n") if line]
    return tree, conflicts


def common_dir(repo: Path) -> Path:
    """The repository's git directory shared by all its worktrees (`.git` of a plain clone)."""
    return Path(git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir").strip())
