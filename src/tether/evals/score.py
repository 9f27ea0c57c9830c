"""Score a cell's delivered work: the visible check and the hidden check, each run in the sandbox on
a fresh copy of the delivered commit with the task's test files put back, so an agent that edited
the tests gains nothing. Also the rework in lines, which needs the run's intermediate trees."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from tether.evals.suite import TaskSpec
from tether.ledger import StoredEvent
from tether.ledger import events as ev
from tether.ledger.queries import finished_of
from tether.policy.schema import EnvironmentPolicy, SandboxPolicy
from tether.workspace.git import git
from tether.workspace.project import ProjectEnv, SetupFailed, plan_for, prepare
from tether.workspace.sandbox import Sandbox, for_setup
from tether.workspace.worktree import open_worktree

OUTPUT_TAIL = 1500


def _checkout(repo: Path, commit: str, dest: Path) -> None:
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=repo, capture_output=True, check=True)
    with tempfile.TemporaryFile() as handle:
        handle.write(archive.stdout)
        handle.seek(0)
        with tarfile.open(fileobj=handle) as tar:
            tar.extractall(dest, filter="data")


def _run(sandbox: Sandbox, command: str, timeout_s: float) -> dict[str, Any]:
    result = sandbox.run(command, timeout_s)
    return {"passed": result.exit_code == 0 and not result.timed_out, "exit_code": result.exit_code,
            "timed_out": result.timed_out, "duration_s": round(result.duration_s, 4),
            "output_tail": result.output[-OUTPUT_TAIL:]}


def score_delivery(task: TaskSpec, repo: Path, base_commit: str, commit: str | None,
                   sandbox_policy: SandboxPolicy, environment: EnvironmentPolicy | None = None) -> dict[str, Any]:
    """{"visible": {...}, "hidden": {...}} for the delivered commit (both failed when there is none)."""
    if commit is None:
        missing = {"passed": False, "exit_code": None, "timed_out": False, "duration_s": 0.0,
                   "output_tail": "no delivered commit"}
        return {"visible": missing, "hidden": missing}
    with tempfile.TemporaryDirectory(prefix="tether-score-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        _checkout(repo, commit, work)
        for relative in task.restore:  # as the agent first saw them
            text = git(repo, "show", f"{base_commit}:{relative}")
            (work / relative).parent.mkdir(parents=True, exist_ok=True)
            (work / relative).write_text(text, encoding="utf-8")
        sandbox = Sandbox(sandbox_policy, work, project=_environment(environment or EnvironmentPolicy(), work,
                                                                      sandbox_policy))
        visible = _run(sandbox, task.visible_check, task.timeouts.check_s)
        if task.hidden is not None:
            shutil.copytree(task.folder / task.hidden, work, dirs_exist_ok=True)
        hidden = _run(sandbox, task.hidden_check, task.timeouts.check_s)
    return {"visible": visible, "hidden": hidden}


def _environment(environment: EnvironmentPolicy, work: Path, sandbox_policy: SandboxPolicy) -> ProjectEnv | None:
    """The project's environment for scoring: the run's own, from the cache (set up again if gone)."""
    def run_setup(command: str, folder: Path) -> tuple[bool, str]:
        result = Sandbox(for_setup(sandbox_policy), work, network=environment.network, building=folder).run(
            command, environment.timeout_s)
        return result.exit_code == 0 and not result.timed_out, result.output[-OUTPUT_TAIL:]

    try:
        return prepare(plan_for(environment, work), work, run_setup)[0]
    except SetupFailed:
        return None  # the checks then fail with the reason in their own output


def rework_lines(repo: Path, run_id: str, base_commit: str, events: list[StoredEvent]) -> int:
    """Lines written and then rewritten within the run: each role's churn (the lines every step
    changed) beyond what the final diff keeps. Writing 10 lines and then changing 4 of them is 4."""
    worktree = open_worktree(repo, run_id, base_commit)
    base = worktree.base_tree()
    last: dict[str | None, str] = {}
    churn = 0
    final = base
    for event in events:
        data = event.data
        if not isinstance(data, ev.ToolResult | ev.Merge) or not data.tree:
            continue
        if isinstance(data, ev.ToolResult):
            churn += worktree.diff(last.get(data.role, base), data.tree).lines
        last[data.role] = data.tree
        final = data.tree
    finished = finished_of(events)
    if finished is not None and finished.tree:
        final = finished.tree
    net = worktree.diff(base, final).lines
    return max(0, (churn - net) // 2)
