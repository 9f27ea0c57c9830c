"""A git of the agent's own, inside the sandbox. Agents (Claude Code and Codex especially) run `git
status`, `diff`, `stash`, `checkout -- file` and local commits as a person would; the repository's
store is read-only in the sandbox, so each worktree gets a private git dir: its own index, object
store and refs, over the repository's objects (read through alternates), with a config that keeps
only what git needs to read them (no hooks, no fsmonitor, no remotes, no credentials) and an
identity for commits. The sandbox's `.git` points there. Tether's own git keeps using the worktree's
real git dir, never this one, so nothing the agent does with git reaches the user's repository or
runs a program the agent configured; what is delivered is still the worktree's files."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from tether.paths import tether_dir
from tether.workspace.git import GitError, common_dir, git
from tether.workspace.identity import hand_over, sandbox_uid

# What the private git dir keeps of the repository's config: how to read its objects.
_KEPT = ("core.repositoryformatversion", "core.filemode", "core.symlinks", "core.ignorecase",
         "core.precomposeunicode", "core.quotepath", "extensions.objectformat")


def agent_git_dir(repo: Path, worktree: Path) -> Path:
    return tether_dir(repo) / "agent-git" / worktree.name


def agent_git(repo: Path, worktree: Path, real_git_dir: Path) -> tuple[Path, Path]:
    """(the file the sandbox shows as the worktree's `.git`, the private git dir it points at), made
    once per worktree from its real git dir's HEAD: the agent's index and refs then follow its own
    git commands."""
    folder = agent_git_dir(repo, worktree)
    pointer = folder.with_name(f"{folder.name}.pointer")
    if (folder / "HEAD").is_file() and pointer.is_file():
        return pointer, folder
    shutil.rmtree(folder, ignore_errors=True)
    head = (real_git_dir / "HEAD").read_text().strip()
    env = {"GIT_DIR": str(real_git_dir), "GIT_WORK_TREE": str(worktree)}
    commit = git(worktree, "rev-parse", "HEAD", env=env).strip()
    store = common_dir(repo)
    for sub in ("objects/info", "refs/heads", "refs/tags", "info"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "objects" / "info" / "alternates").write_text(f"{store / 'objects'}\n")
    settings = ["[core]", "\tbare = false", "\thooksPath = /dev/null", "\tfsmonitor = false",
                "[user]", "\tname = Tether agent", "\temail = agent@tether.invalid"]
    for key in _KEPT:
        with contextlib.suppress(GitError):  # not set
            value = git(repo, "config", "--get", key).strip()
            section, name = key.split(".", 1)
            settings += [f"[{section}]", f"\t{name} = {value}"]
    (folder / "config").write_text("\n".join(settings) + "\n")
    refs = git(repo, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/tags")
    (folder / "packed-refs").write_text("# pack-refs with: peeled\n" + refs)
    if head.startswith("ref: refs/heads/"):
        branch = folder / head.removeprefix("ref: ")
        branch.parent.mkdir(parents=True, exist_ok=True)
        branch.write_text(f"{commit}\n")
        (folder / "HEAD").write_text(f"{head}\n")
    else:
        (folder / "HEAD").write_text(f"{commit}\n")
    git(worktree, "read-tree", commit, env={"GIT_DIR": str(folder), "GIT_INDEX_FILE": str(folder / "index"),
                                            "GIT_WORK_TREE": str(worktree)})
    hand_over(folder, sandbox_uid(worktree))
    pointer.write_text(f"gitdir: {folder}\n")
    return pointer, folder


def remove_agent_git(repo: Path, worktree: Path) -> None:
    folder = agent_git_dir(repo, worktree)
    shutil.rmtree(folder, ignore_errors=True)
    folder.with_name(f"{folder.name}.pointer").unlink(missing_ok=True)
