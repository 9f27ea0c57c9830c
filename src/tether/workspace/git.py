"""Thin wrapper over the git CLI with errors that say which command failed and why."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tether.errors import TetherError


class GitError(TetherError):
    pass


# Config that makes git run a program of its choosing. Tether's own git runs outside the sandbox,
# in worktrees the agent writes: none of it may run there, whoever set it.
_NO_EXECUTION = {
    "core.fsmonitor": "false",
    "core.hooksPath": "/dev/null",
    "protocol.ext.allow": "never",
    "safe.directory": "*",  # the agent's files belong to the sandbox user; the git dir is found, not discovered
}
# Identity and config for commands Tether runs itself: never the user's hooks, signing or pager.
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Tether",
    "GIT_AUTHOR_EMAIL": "tether@localhost",
    "GIT_COMMITTER_NAME": "Tether",
    "GIT_COMMITTER_EMAIL": "tether@localhost",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
}


def git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without its own GIT_* settings (a GIT_DIR inherited from a hook
    would point Tether elsewhere), plus Tether's identity and the config above."""
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("GIT_")}
    return {**inherited, **_GIT_ENV, **with_config({}), **(extra or {})}


def with_config(config: dict[str, str]) -> dict[str, str]:
    """Environment entries that add `config` to Tether's own (for `git(env=...)`): through the
    environment, so a value such as an authorization header never appears in a process listing."""
    settings = {**_NO_EXECUTION, **config}
    return {"GIT_CONFIG_COUNT": str(len(settings)),
            **{f"GIT_CONFIG_KEY_{i}": key for i, key in enumerate(settings)},
            **{f"GIT_CONFIG_VALUE_{i}": value for i, value in enumerate(settings.values())}}


def git(cwd: Path, *args: str, input_text: str | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        input=input_text,
        capture_output=True,
        text=True,
        env=git_env(env),
    )
    if result.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed in {cwd}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


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
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, env=git_env())
    if result.returncode not in (0, 1):  # 1 means "merged, with conflicts"
        raise GitError(f"git {' '.join(args)} failed in {repo}: {result.stderr.strip()}")
    tree, *conflicts = [line for line in result.stdout.split("\n") if line]
    return tree, conflicts


def common_dir(repo: Path) -> Path:
    """The repository's git directory shared by all its worktrees (`.git` of a plain clone)."""
    return Path(git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir").strip())
