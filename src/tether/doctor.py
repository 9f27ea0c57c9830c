"""`tether doctor`: before any money is spent, does this repository work under Tether? On the base
commit, in a throwaway worktree: the sandbox, the project's environment (set up or from the
cache), and every check, each said plainly with why it fails."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tether.policy import Policy
from tether.workspace.git import git, head_commit, repo_root
from tether.workspace.project import SetupFailed, plan_for, prepare
from tether.workspace.sandbox import SandboxUnavailable, for_setup, require_sandbox, worktree_sandbox
from tether.workspace.worktree import create_worktree

TAIL = 1500


@dataclass(frozen=True)
class Finding:
    what: str
    ok: bool
    detail: str = ""


@dataclass
class Diagnosis:
    base_commit: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def setup_works(self) -> bool:
        return all(f.ok for f in self.findings if not f.what.startswith("check "))


def diagnose(repo: Path, policy: Policy, say: Callable[[Finding], None] = lambda _f: None) -> Diagnosis:
    repo = repo_root(repo.resolve())
    diagnosis = Diagnosis(head_commit(repo))

    def found(finding: Finding) -> None:
        diagnosis.findings.append(finding)
        say(finding)

    try:
        require_sandbox(policy.sandbox)
    except SandboxUnavailable as exc:
        found(Finding("sandbox", False, str(exc)))
        return diagnosis
    name = f"doctor-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    worktree = create_worktree(repo, name, diagnosis.base_commit, policy.writes.ignore)
    try:
        probe = worktree_sandbox(policy.sandbox, policy.commands.network, worktree.path, repo).run("true", 30)
        found(Finding("sandbox", probe.exit_code == 0, f"{policy.sandbox.mode}" if probe.exit_code == 0
                      else probe.output[-TAIL:]))
        if probe.exit_code != 0:
            return diagnosis
        plan = plan_for(policy.environment, worktree.path)

        def run_setup(command: str, folder: Path) -> tuple[bool, str]:
            sandbox = worktree_sandbox(for_setup(policy.sandbox), policy.environment.network, worktree.path, repo,
                                       building=folder)
            result = sandbox.run(command, policy.environment.timeout_s)
            return result.exit_code == 0 and not result.timed_out, result.output[-TAIL:]

        started = time.perf_counter()
        try:
            project, built = prepare(plan, worktree.path, run_setup)
        except SetupFailed as exc:
            found(Finding("environment", False, f"{plan.note}\n{exc}"))
            return diagnosis
        how = "set up" if built else "from the cache"
        found(Finding("environment", True, f"{plan.note}; {how} in {time.perf_counter() - started:.1f}s"
                      + (f" ({project.folder})" if project else "")))
        sandbox = worktree_sandbox(policy.sandbox, policy.commands.network, worktree.path, repo, project=project)
        for check in policy.checks:
            result = sandbox.run(check.command, check.timeout_s)
            passed = result.exit_code == 0 and not result.timed_out
            detail = "passes on the base commit" if passed else (
                f"fails on the base commit, before any agent ran (exit {result.exit_code})\n{result.output[-TAIL:]}")
            found(Finding(f"check {check.name}", passed, detail))
    finally:
        worktree.remove()
        git(repo, "branch", "-D", "--quiet", worktree.branch)
    return diagnosis
