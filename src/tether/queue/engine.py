"""DBOS as Tether's durable engine: where its system database lives, the task workflow, and the
worker that runs it. A task is one DBOS workflow whose id is the task id; its run has the same id."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSConfig

from tether.ledger import Ledger

QUEUE = "tether"
WORKFLOW = "tether.task"
# Explicit, so a worker restarted with the same code recovers what its predecessor left PENDING
# (DBOS only recovers workflows of its own application version).
APP_VERSION = "tether-task-1"  # change when task_workflow's steps change
WAIT_POLL_S = 2.0  # how often a task waiting on the kill switch or a repository slot looks again
WAIT_POLL_MAX_S = 30.0


def system_db_url(ledger_url: str) -> str:
    """DBOS's tables: beside the event log for SQLite, in the same database (schema dbos) for PostgreSQL."""
    if ledger_url.startswith("sqlite:///"):
        path = Path(ledger_url.removeprefix("sqlite:///"))
        return f"sqlite:///{path.with_name('queue.db')}"
    return ledger_url.replace("postgresql+psycopg://", "postgresql://", 1)


def default_executor_id() -> str:
    return socket.gethostname()


def migrate(ledger_url: str) -> None:
    DBOS.migrate(system_db_url(ledger_url))


_ledger: Ledger | None = None  # the worker's store, set by launch()
_report: Callable[[str], None] = print


def _store() -> Ledger:
    if _ledger is None:
        raise RuntimeError("the task workflow runs only inside a launched tether worker")
    return _ledger


@DBOS.step(name="tether.execute")
def _execute_step(task: dict[str, Any]) -> dict[str, Any]:
    from tether.queue.execute import execute

    _report(f"{task['id']} start: {task['instruction'][:60]}")
    outcome = execute(_store(), task)
    _report(f"{task['id']} {outcome['status']}" + (f": {outcome['reason']}" if outcome.get("reason") else ""))
    return outcome


@DBOS.step(name="tether.redeliver")
def _redeliver_step(task_id: str) -> float | None:
    from tether.queue.execute import redeliver

    again = redeliver(_store(), task_id)
    _report(f"{task_id} delivery tried again" + (f"; next try at {again:.0f}" if again else ""))
    return again


@DBOS.workflow(name=WORKFLOW)
def task_workflow(task: dict[str, Any]) -> dict[str, Any]:
    """Run the task's run until it ends. A run held by the kill switch, a fleet limit, a failing model
    or a busy repository waits here (durably) and is resumed from its events afterwards."""
    poll = WAIT_POLL_S
    while True:
        outcome = _execute_step(task)
        if outcome["status"] not in ("waiting", "stopped") or not outcome.get("wait"):
            while outcome.get("redeliver_at") is not None:  # a delivery the forge refused for now
                DBOS.sleep(max(0.05, outcome["redeliver_at"] - time.time()))
                outcome = {**outcome, "redeliver_at": _redeliver_step(task["id"])}
            return outcome
        retry_at = outcome.get("retry_at")
        delay = max(0.05, retry_at - time.time()) if retry_at else poll
        poll = min(WAIT_POLL_MAX_S, poll * 1.5) if not retry_at else WAIT_POLL_S
        DBOS.sleep(delay)


def launch(ledger: Ledger, executor_id: str, concurrency: int, report: Callable[[str], None] = print,
           polling_s: float = 0.1) -> None:
    """Start DBOS in this process: recover this executor's unfinished tasks and take queued ones."""
    global _ledger, _report
    _ledger, _report = ledger, report
    config: DBOSConfig = {
        "name": "tether",
        "system_database_url": system_db_url(ledger.url),
        "executor_id": executor_id,
        "application_version": APP_VERSION,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    DBOS.register_queue(QUEUE, worker_concurrency=concurrency, polling_interval_sec=polling_s,
                        on_conflict="always_update")


def shutdown() -> None:
    global _ledger
    DBOS.destroy(destroy_registry=False)
    _ledger = None
