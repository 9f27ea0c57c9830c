"""The project's environment, built only from what a person vouched for: the files of a commit (the
run's base) or the policy's own setup, never a worktree the agent wrote. On start, continue, resume,
a retried task and an eval's scoring alike, the plan is read from the commit's objects; when the
cache has no environment for it, Tether checks the commit out in a throwaway worktree of its own,
runs the setup there in the sandbox (with the network only if `[environment] network` allows it),
checks what the setup made, and removes that worktree.

Files the build wrote into the source tree (hatch-vcs's and setuptools-scm's version file) are kept
with the environment and laid into every run's worktree and every check's folder, so a fresh
worktree imports the same package as the one the environment was built in."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tether.paths import tether_dir
from tether.policy.schema import EnvironmentPolicy, SandboxPolicy
from tether.workspace.git import git
from tether.workspace.project import GENERATED, CommitFiles, Plan, ProjectEnv, SetupFailed, plan_for, prepare
from tether.workspace.sandbox import ExecResult, for_setup, worktree_sandbox
from tether.workspace.worktree import DEFAULT_IGNORES, add_detached_worktree, registered_git_dir, remove_worktree

GENERATED_FILE_LIMIT = 1 << 20
GENERATED_MAX_FILES = 50
SetupRecorder = Callable[[str, ExecResult], None]


@dataclass(frozen=True)
class Prepared:
    plan: Plan
    project: ProjectEnv | None
    built: bool


def provision(repo: Path, commit: str, environment: EnvironmentPolicy, sandbox: SandboxPolicy,
              on_setup: SetupRecorder | None = None) -> Prepared:
    """The environment for work based on `commit`, from the cache or built now. Raises SetupFailed
    (with the command and its output) when a setup command fails or leaves something the sandbox
    must not show."""
    source = CommitFiles(repo, commit)
    plan = plan_for(environment, source)

    def build(folder: Path) -> list[str]:
        checkout = tether_dir(repo) / "setup" / f"{commit[:12]}-{secrets.token_hex(4)}"
        checkout.parent.mkdir(exist_ok=True)
        add_detached_worktree(repo, checkout, commit)
        try:
            runner = worktree_sandbox(for_setup(sandbox), environment.network, checkout, repo, building=folder)
            for command in plan.setup:
                result = runner.run(command, environment.timeout_s)
                if on_setup is not None:
                    on_setup(command, result)
                if result.exit_code != 0 or result.timed_out:
                    raise SetupFailed(command, result.output[-2000:], plan.note)
            _check_mounts(plan, folder)
            generated = _harvest(repo, checkout, folder)
        finally:
            remove_worktree(repo, checkout)
        _seal(folder)
        return generated

    project, built = prepare(plan, source, build)
    return Prepared(plan, project, built)


def _check_mounts(plan: Plan, folder: Path) -> None:
    """Every folder the plan lays into worktrees must be the environment's own, reached without a
    symlink (a postinstall can make node_modules a link to /)."""
    root = os.path.realpath(folder)
    for target, source in plan.mounts.items():
        path = os.path.normpath(os.path.join(root, source))
        if not os.path.lexists(path):
            continue  # nothing to lay there (a package.json without dependencies)
        real = os.path.realpath(path)
        if real != path or not Path(real).is_relative_to(root) or not os.path.isdir(real):
            raise SetupFailed(f"(the check of {source})", f"the environment's {source} (to be laid at {target}) "
                              f"is not a folder of the environment reached without symlinks (it leads to {real}); "
                              "the sandbox will not show it", plan.note)


def _harvest(repo: Path, checkout: Path, folder: Path) -> list[str]:
    """Files the setup created in the checkout next to the commit's own files (a version file in a
    package folder), copied into the environment's `generated/`. Build folders, caches and
    metadata (build/, *.egg-info, __pycache__) live in folders the commit does not have: left out."""
    env = {"GIT_DIR": str(registered_git_dir(repo, checkout)), "GIT_WORK_TREE": str(checkout)}
    tracked = git(checkout, "ls-files", "-z", env=env).split("\0")
    folders = {""} | {os.path.dirname(path) for path in tracked if path}
    folders |= {parent for name in folders for parent in _parents(name)}
    created = git(checkout, "ls-files", "-z", "--others", env=env).split("\0")
    created += git(checkout, "ls-files", "-z", "--others", "--ignored", "--exclude-standard", env=env).split("\0")
    ignored = _ignored_names()
    kept: list[str] = []
    for relative in sorted(set(filter(None, created))):
        path = checkout / relative
        if os.path.dirname(relative) not in folders or any(part in ignored for part in Path(relative).parts) \
                or relative.endswith((".pyc", ".pyo")) or not path.is_file() or path.is_symlink() \
                or path.stat().st_size > GENERATED_FILE_LIMIT:
            continue
        target = folder / GENERATED / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        kept.append(relative)
        if len(kept) >= GENERATED_MAX_FILES:
            break
    return kept


def _parents(name: str) -> list[str]:
    parts = name.split("/") if name else []
    return ["/".join(parts[:end]) for end in range(len(parts))]


def _ignored_names() -> set[str]:
    return {pattern.rstrip("/") for pattern in DEFAULT_IGNORES if "*" not in pattern}


def _seal(folder: Path) -> None:
    """The environment belongs to Tether once built: every run's sandbox (each its own user) may
    read it, none may change it (no write for group or others, no set-id bit)."""
    uid, gid = os.geteuid(), os.getegid()
    paths = [str(folder)] + [os.path.join(here, name) for here, dirs, files in os.walk(folder)
                             for name in [*dirs, *files]]
    for path in paths:
        info = os.lstat(path)
        if uid == 0 and (info.st_uid, info.st_gid) != (uid, gid):
            os.lchown(path, uid, gid)
        if not os.path.islink(path):
            os.chmod(path, (info.st_mode & 0o1755) | 0o444 | (0o111 if info.st_mode & 0o111 else 0))
