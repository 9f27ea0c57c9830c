"""Score a cell's delivered work: the visible check and the hidden check, each run in the sandbox on
a clean export of the delivered commit with the task's test files put back, so an agent that edited
the tests gains nothing. Also the rework in lines, which needs the run's intermediate trees."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tether.evals.suite import TaskSpec
from tether.ledger import StoredEvent
from tether.ledger import events as ev
from tether.ledger.queries import finished_of
from tether.policy.schema import EnvironmentPolicy, SandboxPolicy
from tether.workspace.export import checked_out
from tether.workspace.git import git
from tether.workspace.project import SetupFailed
from tether.workspace.provision import provision
from tether.workspace.sandbox import Sandbox
from tether.workspace.worktree import open_worktree

OUTPUT_TAIL = 1500


def _run(sandbox: Sandbox, command: str, timeout_s: float) -> dict[str, Any]:
    result = sandbox.run(command, timeout_s)
    return {"passed": result.exit_code == 0 and not result.timed_out, "exit_code": result.exit_code,
            "timed_out": result.timed_out, "duration_s": round(result.duration_s, 4),
            "output_tail": result.output[-OUTPUT_TAIL:]}


def score_delivery(task: TaskSpec, repo: Path, base_commit: str, commit: str | None,
                   sandbox_policy: SandboxPolicy, environment: EnvironmentPolicy | None = None) -> dict[str, Any]:
    """{"visible": {...}, "hidden": {...}} for the delivered commit (both failed when there is none),
    in the environment built from the task's base commit (never from the agent's manifests)."""
    if commit is None:
        missing = {"passed": False, "exit_code": None, "timed_out": False, "duration_s": 0.0,
                   "output_tail": "no delivered commit"}
        return {"visible": missing, "hidden": missing}
    try:
        project = provision(repo, base_commit, environment or EnvironmentPolicy(), sandbox_policy).project
    except SetupFailed:
        project = None  # the checks then fail with the reason in their own output
    tree = git(repo, "rev-parse", f"{commit}^{{tree}}").strip()
    with checked_out(repo, tree, project) as work:
        for relative in task.restore:  # as the agent first saw them
            text = git(repo, "show", f"{base_commit}:{relative}")
            (work / relative).parent.mkdir(parents=True, exist_ok=True)
            (work / relative).write_text(text, encoding="utf-8")
        sandbox = Sandbox(sandbox_policy, work, project=project, judging=True)
        visible = _run(sandbox, task.visible_check, task.timeouts.check_s)
        if task.hidden is not None:
            shutil.copytree(task.folder / task.hidden, work, dirs_exist_ok=True)
        hidden = _run(sandbox, task.hidden_check, task.timeouts.check_s)
    return {"visible": visible, "hidden": hidden}


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
