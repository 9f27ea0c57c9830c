"""Tasks from outside the workers: submit (idempotent by key), list, show, cancel, recover. These
talk to DBOS through its client, so they never dequeue or run anything themselves."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dbos import DBOSClient
from dbos._utils import INTERNAL_QUEUE_NAME

from tether.errors import TetherError
from tether.ledger import Ledger
from tether.ledger import events as ev
from tether.ledger.fleet import Fleet
from tether.people import os_user
from tether.policy import find_policy
from tether.queue import engine, wake
from tether.queue.places import system_db_url
from tether.workspace.git import repo_root
from tether.workspace.mirror import check_url


class TaskError(TetherError):
    pass


def task_id_for(key: str | None) -> str:
    """The same key always names the same task, so a repeated submission finds it."""
    if key is None:
        return f"t-{secrets.token_hex(8)}"
    return f"t-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class Task:
    id: str
    state: str  # queued running awaiting_approval waiting succeeded failed stopped cancelled
    instruction: str
    repo: str
    key: str | None
    priority: int
    submitted_at: float
    attempts: int
    run_id: str | None
    reason: str
    executor: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Tasks:
    """The task queue of one store."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        engine.migrate(ledger.url)  # the client never creates DBOS's tables itself
        self.client = DBOSClient(system_database_url=system_db_url(ledger.url))

    def close(self) -> None:
        self.client.destroy()

    def submit(self, instruction: str, repo: Path, key: str | None = None, priority: int = 0,
               policy: Path | None = None, model: str | None = None, source: str = "queue",
               url: str | None = None, branch: str | None = None) -> tuple[str, bool]:
        """Enqueue a task; returns (task id, whether this call created it). `source` tags its run.
        With `url`, the task names the repository by URL (and `branch`, default the remote's
        default): each worker fetches it into its own mirror, and reads the policy of the commit."""
        if not instruction.strip():
            raise TaskError("the instruction is empty")
        if not 0 <= priority <= 2_000_000_000:
            raise TaskError(f"priority must be between 0 (first) and 2000000000, got {priority}")
        if url is not None:
            if policy is not None:
                raise TaskError("--policy is for a local repository; a task named by URL runs with the "
                                "tether.toml of the commit it starts from")
            name = check_url(url)
        else:
            if branch is not None:
                raise TaskError("--branch is for a repository named by --url; a local task starts from HEAD")
            root = repo_root(repo.resolve())
            find_policy(root, policy.resolve() if policy else None, Fleet(self.ledger).org_policy())  # refuse now
            name = str(root)
        task_id = task_id_for(key)
        nonce = secrets.token_hex(8)
        task = {"id": task_id, "instruction": instruction, "repo": name, "key": key, "priority": priority,
                "policy": str(policy.resolve()) if policy else None, "model": model, "submitted_at": time.time(),
                "submitted_by": os_user(), "nonce": nonce, "source": source, "branch": branch}
        self.client.enqueue({"workflow_name": engine.WORKFLOW, "queue_name": engine.QUEUE, "workflow_id": task_id,
                             "priority": priority + 1}, task)  # DBOS counts from 1
        wake.notify(self.ledger)
        stored = self._input(task_id)
        return task_id, stored is not None and stored.get("nonce") == nonce

    def _input(self, task_id: str) -> dict[str, Any] | None:
        found = self.client.list_workflows(workflow_ids=[task_id], load_output=False)
        if not found or not found[0].input:
            return None
        return found[0].input["args"][0]

    def list(self, limit: int = 50, state: str | None = None) -> list[Task]:
        statuses = self.client.list_workflows(name=engine.WORKFLOW, limit=limit, sort_desc=True)
        tasks = [self._view(status) for status in statuses]
        return [task for task in tasks if state is None or task.state == state]

    def get(self, ref: str) -> Task:
        found = self.client.list_workflows(workflow_id_prefix=ref, name=engine.WORKFLOW, limit=2)
        exact = [status for status in found if status.workflow_id == ref]
        if exact:
            return self._view(exact[0])
        if not found:
            raise TaskError(f"no task {ref!r}")
        if len(found) > 1:
            raise TaskError(f"task prefix {ref!r} is ambiguous; give more characters")
        return self._view(found[0])

    def _view(self, status: Any) -> Task:
        task = status.input["args"][0] if status.input else {}
        run = self.ledger.get_run(status.workflow_id) if self.ledger.has_run(status.workflow_id) else None
        output = status.output if isinstance(status.output, dict) else {}
        reason = output.get("reason", "")
        if status.status == "CANCELLED":
            state = "cancelled"
        elif status.status == "ERROR":
            state, reason = "failed", str(status.error)
        elif run is not None:
            state = run.status
            reason = reason or (run.summary or {}).get("reason", "")
        elif status.status == "SUCCESS":
            state = output.get("status", "failed")
        else:
            state = "queued" if status.status in ("ENQUEUED", "DELAYED") else "running"
        attempts = 0
        if run is not None:
            attempts = sum(1 for e in self.ledger.events(run.id)
                           if e.type in (ev.EventType.RUN_STARTED, ev.EventType.RUN_RESUMED))
        return Task(id=status.workflow_id, state=state, instruction=task.get("instruction", ""),
                    repo=task.get("repo", ""), key=task.get("key"), priority=max(0, (status.priority or 1) - 1),
                    submitted_at=task.get("submitted_at", (status.created_at or 0) / 1000), attempts=attempts,
                    run_id=run.id if run else None, reason=reason, executor=status.executor_id)

    def cancel(self, ref: str, reason: str = "cancelled") -> Task:
        """Cancel a task: a queued one never starts; a running one stops at its next step boundary
        (a kill switch on the task), keeping its work."""
        task = self.get(ref)
        if task.state in ("succeeded", "failed", "cancelled"):
            raise TaskError(f"task {task.id} is already {task.state}")
        Fleet(self.ledger).set_switch(f"task:{task.id}", reason, os_user())
        self.client.cancel_workflow(task.id)
        return self.get(task.id)

    def recover(self, executor_id: str) -> list[str]:
        """Put a dead worker's unfinished tasks back on the queue for any live worker. The runs'
        leases still guard against a worker that was only presumed dead."""
        sys_db = self.client._sys_db  # DBOS exposes recovery only inside a launched app that would dequeue
        pending = sys_db.get_pending_workflows(executor_id, engine.APP_VERSION)
        return [p.workflow_id for p in pending
                if sys_db.reenqueue_for_recovery(p.workflow_id, [executor_id], INTERNAL_QUEUE_NAME)]
