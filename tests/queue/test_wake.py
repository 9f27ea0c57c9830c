"""Dispatch without polling: a submit wakes the workers (a FIFO per worker beside a SQLite store,
LISTEN/NOTIFY on PostgreSQL), and so does a task that ends. Shown with workers whose rescan is a
minute, so a task that starts within seconds was started by a wake."""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import bash, script
from tests.queue.helpers import start_worker, stop, submit_json, wait_until
from tether.ledger import Ledger
from tether.queue import wake
from tether.queue.tasks import Tasks

NEVER = 60.0  # the workers' rescan here: longer than any wait in these tests


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self.changed = threading.Condition()

    def __call__(self) -> None:
        with self.changed:
            self.calls += 1
            self.changed.notify_all()

    def reach(self, calls: int, timeout: float = 5.0) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.calls >= calls, timeout)


def test_a_notify_wakes_every_listener_of_the_store_and_only_those(db_url: str, tmp_path: Path):
    ledger = Ledger(db_url)
    other = Ledger(f"sqlite:///{tmp_path / 'other' / 'tether.db'}")
    heard, also_heard, elsewhere = Counter(), Counter(), Counter()
    listeners = [wake.Listener(ledger.url, heard), wake.Listener(ledger.url, also_heard),
                 wake.Listener(other.url, elsewhere)]
    try:
        for counter in (heard, also_heard, elsewhere):
            assert counter.reach(1)  # each looks once on start, for what was queued unheard
        wake.notify(ledger)
        assert heard.reach(2) and also_heard.reach(2)
        time.sleep(0.3)
        assert elsewhere.calls == 1
    finally:
        for listener in listeners:
            listener.close()
    wake.notify(ledger)  # nobody listens any more: nothing to wake, and no error
    time.sleep(0.2)
    assert heard.calls == 2
    if db_url.startswith("sqlite"):
        assert list((tmp_path / "store" / "queue.wake").iterdir()) == []  # each listener took its FIFO away
    ledger.close()
    other.close()


def test_a_dead_workers_fifo_is_removed_once_stale_and_a_live_one_never(sqlite_url: str, tmp_path: Path):
    ledger = Ledger(sqlite_url)
    listener = wake.Listener(ledger.url, Counter())
    folder = tmp_path / "store" / "queue.wake"
    dead, just_dead = folder / "1-dead", folder / "2-dead"
    os.mkfifo(dead)
    os.mkfifo(just_dead)
    old = time.time() - wake.STALE_FIFO_S - 5
    os.utime(dead, (old, old))
    live = next(path for path in folder.iterdir() if path not in (dead, just_dead))
    os.utime(live, (old, old))  # a live worker's FIFO is kept however old
    try:
        wake.notify(ledger)
        assert sorted(folder.iterdir()) == sorted([just_dead, live])
    finally:
        listener.close()
        ledger.close()


def test_a_notify_never_writes_into_a_file_or_through_a_link_planted_among_the_fifos(sqlite_url: str, tmp_path: Path):
    ledger = Ledger(sqlite_url)
    heard = Counter()
    listener = wake.Listener(ledger.url, heard)
    folder = tmp_path / "store" / "queue.wake"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (folder / "plain-file").write_text("also precious\n")
    (folder / "link-to-victim").symlink_to(victim)
    fifo_elsewhere = tmp_path / "fifo-elsewhere"
    os.mkfifo(fifo_elsewhere)
    reader = os.open(fifo_elsewhere, os.O_RDWR | os.O_NONBLOCK)
    (folder / "link-to-fifo").symlink_to(fifo_elsewhere)
    try:
        assert heard.reach(1)
        wake.notify(ledger)
        assert heard.reach(2)  # the real listener still heard it
        assert victim.read_text() == "precious\n"
        assert (folder / "plain-file").read_text() == "also precious\n"
        with pytest.raises(BlockingIOError):
            os.read(reader, 10)  # nothing went through the link to the FIFO outside
    finally:
        os.close(reader)
        listener.close()
        ledger.close()


def _started(ledger: Ledger, task_id: str) -> bool:
    return ledger.has_run(task_id) and bool(ledger.events(task_id))


def test_an_idle_worker_starts_a_submitted_task_at_once_and_the_next_when_one_ends(
        db_url: str, repo: Path, tmp_path: Path):
    quick = script(tmp_path / "quick.json", [{"tool_calls": [{"name": "submit"}]}])
    slow = script(tmp_path / "slow.json", [bash("sleep 3"), {"tool_calls": [{"name": "submit"}]}])
    ledger = Ledger(db_url)
    worker = start_worker(db_url, "w", tmp_path / "w.log", rescan=NEVER)
    try:
        first = submit_json(db_url, repo, "warm up", quick)["task_id"]  # waits for the worker to start
        wait_until(lambda: ledger.has_run(first) and ledger.get_run(first).status == "succeeded", 60, "the first task")
        time.sleep(1.0)  # idle: the worker is waiting, and its next rescan is a minute away
        for n in range(3):
            submitted = time.time()
            task = submit_json(db_url, repo, f"quick {n}", quick)["task_id"]
            wait_until(lambda task=task: _started(ledger, task), 10, "a wake to start the task")
            assert ledger.events(task)[0].ts - submitted < 3.0
        # one at a time: the second waits for the first to end, then starts without a rescan
        queue = Tasks(ledger)
        one, _ = queue.submit("slow", repo, model=slow)
        two, _ = queue.submit("after slow", repo, model=quick)
        queue.close()
        wait_until(lambda: _started(ledger, two), 20, "the second task to start when the first ended")
        ended = ledger.events(one)[-1].ts
        assert ledger.get_run(one).status == "succeeded"
        assert 0 <= ledger.events(two)[0].ts - ended < 3.0
    finally:
        stop([worker])
        ledger.close()


def test_one_at_a_time_holds_however_many_wakes_arrive(db_url: str, repo: Path, tmp_path: Path):
    """A task counts against the worker's concurrency from its claim: DBOS counts it only once its
    thread has started, and a wake right after a claim would otherwise take a second task."""
    model = script(tmp_path / "short.json", [bash("sleep 0.4"), {"tool_calls": [{"name": "submit"}]}])
    ledger = Ledger(db_url)
    queue = Tasks(ledger)
    worker = start_worker(db_url, "w", tmp_path / "w.log", rescan=NEVER)
    try:
        warm = submit_json(db_url, repo, "warm up", model)["task_id"]
        wait_until(lambda: ledger.has_run(warm) and ledger.get_run(warm).status == "succeeded", 60, "the worker")
        task_ids = [queue.submit(f"short {n}", repo, model=model)[0] for n in range(8)]
        while not all(ledger.has_run(t) and ledger.get_run(t).status == "succeeded" for t in task_ids):
            wake.notify(ledger)  # a storm of wakes while tasks start and end
            time.sleep(0.005)
    finally:
        stop([worker])
        queue.close()
    spans = sorted((events[0].ts, events[-1].ts) for events in (ledger.events(t) for t in task_ids))
    for (_, ended), (started, _) in itertools.pairwise(spans):
        assert started >= ended, spans  # never two runs at once on a worker of concurrency 1
    ledger.close()


def test_the_queue_file_is_journaled_ahead_and_every_commit_is_synced(sqlite_url: str):
    ledger = Ledger(sqlite_url)
    queue = Tasks(ledger)
    try:
        with queue.client._sys_db.engine.connect() as conn:  # the connections DBOS itself commits with
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL: a commit survives power loss
    finally:
        queue.close()
        ledger.close()
