"""DBOS as Tether's durable engine: where its system database lives, the task workflow, and the
worker that runs it. A task is one DBOS workflow whose id is the task id; its run has the same id."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from dbos import DBOS, DBOSConfig
from dbos._core import ActiveWorkflowById
from dbos._dbos import _get_dbos_instance
from dbos._queue import queue_worker_thread

from tether.ledger import Ledger
from tether.queue.places import system_db_url
from tether.queue.wake import Listener

QUEUE = "tether"
WORKFLOW = "tether.task"
# Explicit, so a worker restarted with the same code recovers what its predecessor left PENDING
# (DBOS only recovers workflows of its own application version).
APP_VERSION = "tether-task-1"  # change when task_workflow's steps change
WAIT_POLL_S = 2.0  # how often a task waiting on the kill switch or a repository slot looks again
WAIT_POLL_MAX_S = 30.0
# Dispatch is woken by events (a task queued, a slot freed); this rescan only bounds what a lost
# wake could delay, e.g. a NOTIFY sent while a worker was reconnecting.
RESCAN_S = 5.0
RETRY_S = 0.02  # the first look again when a look left claimable work behind
CLAIM_HOLD_S = 30.0


def default_executor_id() -> str:
    return socket.gethostname()


def migrate(ledger_url: str) -> None:
    """DBOS's tables; in a SQLite file, journaled ahead (WAL, which the file keeps): a commit is then one
    fsync of the log instead of three or four of a rollback journal, and readers never wait for a
    writer. SQLite's default `synchronous=FULL` stays, so a committed claim or step survives power loss."""
    url = system_db_url(ledger_url)
    DBOS.migrate(url)
    if url.startswith("sqlite:///"):
        _journal_ahead(url.removeprefix("sqlite:///"))


def _journal_ahead(path: str, patience_s: float = 30.0) -> None:
    """Switch the file to WAL once. The switch needs the file to itself, so processes that open a new
    store together (workers, submitters) take turns; from then on each only reads that it is done."""
    deadline = time.monotonic() + patience_s
    with contextlib.closing(sqlite3.connect(path)) as conn:
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                    return
                conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError:  # another process holds the file: it may be switching it
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)


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


class _WakeableStop(threading.Event):
    """The stop event of the dispatch thread, whose wait between two looks at the queue also ends on
    wake(). DBOS's own queue worker runs with it, so its dequeue (claims in a transaction, the
    worker's concurrency, priorities) is unchanged; only the time it waits is event-driven.

    A look can come back empty while work remains (another worker's claim raced it, a lock): then,
    while `work_left()` says this worker has room and tasks are queued, it looks again after
    RETRY_S, doubling up to the rescan, instead of sleeping until the next event."""

    def __init__(self, work_left: Callable[[], bool]) -> None:
        super().__init__()
        self._woken = threading.Event()
        self._work_left = work_left
        self._retry_s = RETRY_S

    def wake(self) -> None:
        self._woken.set()

    def set(self) -> None:
        super().set()
        self._woken.set()

    def wait(self, timeout: float | None = None) -> bool:
        if not self.is_set() and self._work_left():
            timeout = self._retry_s if timeout is None else min(timeout, self._retry_s)
            self._retry_s *= 2
        else:
            self._retry_s = RETRY_S
        self._woken.wait(timeout)
        self._woken.clear()  # before the dequeue reads, so a wake from now on is not lost
        return self.is_set()


class _Slots(ActiveWorkflowById):
    """DBOS's count of this process's running workflows, made exact for dispatch: a task counts from
    its claim (DBOS counts it only once its thread has started, so a look right after a claim would
    see room that is not there), and one that ends wakes dispatch for the next."""

    def __init__(self, wake: Callable[[], None]):
        super().__init__()
        self._wake = wake
        self._claims: dict[str, float] = {}  # claimed, not started yet: when
        self._claims_lock = threading.Lock()

    def claimed(self, workflow_ids: list[str]) -> None:
        with self._claims_lock:
            self._claims.update(dict.fromkeys(workflow_ids, time.monotonic()))

    def add(self, key: str, queue_name: str | None = None, queue_partition_key: str | None = None) -> Any:
        entry = super().add(key, queue_name, queue_partition_key)
        with self._claims_lock:
            self._claims.pop(key, None)
        return entry

    def count_for_queue(self, queue_name: str) -> int:
        running = super().count_for_queue(queue_name)
        if queue_name != QUEUE:
            return running
        with self._claims_lock:
            # a claim whose workflow never started (it failed first) stops holding its slot
            expired = time.monotonic() - CLAIM_HOLD_S
            self._claims = {key: at for key, at in self._claims.items() if at >= expired}
            return running + len(self._claims)

    def _remove(self, key: str, bucket: Any) -> None:
        super()._remove(key, bucket)
        self._wake()


_listener: Listener | None = None


def launch(ledger: Ledger, executor_id: str, concurrency: int, report: Callable[[str], None] = print,
           rescan_s: float = RESCAN_S) -> None:
    """Start DBOS in this process: recover this executor's unfinished tasks and take queued ones,
    as soon as they are queued (see wake.py) or a running one ends."""
    global _ledger, _report, _listener
    _ledger, _report = ledger, report
    migrate(ledger.url)
    config: DBOSConfig = {
        "name": "tether",
        "system_database_url": system_db_url(ledger.url),
        "executor_id": executor_id,
        "application_version": APP_VERSION,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.listen_queues([])  # DBOS's own thread would poll this queue; the one below is woken instead
    dbos = _get_dbos_instance()

    def work_left() -> bool:
        if dbos._active_workflows_set.count_for_queue(QUEUE) >= concurrency:
            return False
        try:
            return bool(DBOS.list_queued_workflows(queue_name=QUEUE, status="ENQUEUED", limit=1, load_input=False,
                                                   load_output=False))
        except Exception:  # the database is away: look again (backing off), as DBOS's poll would
            return True

    stop = _WakeableStop(work_left)
    slots = _Slots(stop.wake)
    dbos._active_workflows_set = slots
    DBOS.launch()
    claim = dbos._sys_db.start_queued_workflows

    def claiming(queue: Any, *args: Any, **kwargs: Any) -> Any:
        workflow_ids, stop_reason = claim(queue, *args, **kwargs)
        if queue.name == QUEUE:
            slots.claimed(workflow_ids)
        return workflow_ids, stop_reason

    dbos._sys_db.start_queued_workflows = claiming
    queue = DBOS.register_queue(QUEUE, worker_concurrency=concurrency, polling_interval_sec=rescan_s,
                                on_conflict="always_update")
    dbos.background_thread_stop_events.append(stop)
    dispatch = threading.Thread(target=queue_worker_thread, args=(stop, dbos, queue), name=f"queue-worker-{QUEUE}",
                                daemon=True)
    dispatch.start()
    dbos._background_threads.append(dispatch)
    _listener = Listener(ledger.url, stop.wake)


def shutdown() -> None:
    global _ledger, _listener
    if _listener is not None:
        _listener.close()
        _listener = None
    DBOS.destroy(destroy_registry=False)
    _ledger = None
