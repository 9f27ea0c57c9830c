"""A worker process: DBOS takes tasks from the queue and runs them; this loop only waits for a
signal (or, with idle_exit, for the queue to stay empty) and shuts DBOS down."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from dbos import DBOS

from tether.history.refresh import refresh_due
from tether.ledger import Ledger
from tether.queue import engine


def _busy(executor_id: str) -> bool:
    queued = DBOS.list_workflows(name=engine.WORKFLOW, status=["ENQUEUED", "DELAYED"], limit=1, load_input=False,
                                 load_output=False)
    mine = DBOS.list_workflows(name=engine.WORKFLOW, status="PENDING", executor_id=executor_id, limit=1,
                               load_input=False, load_output=False)
    return bool(queued or mine)


def _refresh(ledger: Ledger, executor_id: str, every_s: float, report: Callable[[str], None]) -> None:
    for repo, done in refresh_due(ledger, every_s, by=f"tether worker {executor_id}").items():
        if isinstance(done, str):
            report(f"outcomes of {repo} not refreshed: {done}")
            continue
        recorded = sum(run.recorded for run in done.runs)
        failed = sum(run.error is not None for run in done.runs)
        report(f"outcomes of {repo} refreshed: {len(done.runs)} change(s), {recorded} outcome(s) recorded"
               + (f", {failed} not asked of the forge" if failed else ""))


def serve(ledger: Ledger, executor_id: str, concurrency: int, idle_exit: float | None,
          report: Callable[[str], None], refresh_every: float | None = None,
          rescan_s: float = engine.RESCAN_S) -> None:
    """Run queued tasks until a signal (or `idle_exit` seconds without one); with `refresh_every`,
    also refresh the outcomes of the store's repositories that often (each refresh is recorded, so
    several workers share the schedule)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        report(f"signal {signum}: stopping; unfinished tasks resume when worker {executor_id} restarts")
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    engine.launch(ledger, executor_id, concurrency, report, rescan_s)
    try:
        idle_since, refresh_at = time.monotonic(), time.monotonic()
        while not stop.wait(0.5):
            if refresh_every is not None and time.monotonic() >= refresh_at:
                _refresh(ledger, executor_id, refresh_every, report)
                refresh_at = time.monotonic() + min(refresh_every, 60.0)  # a due repository is found within a minute
            if idle_exit is None:
                continue
            if _busy(executor_id):
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= idle_exit:
                report(f"no task for {idle_exit:g}s; exiting")
                break
    finally:
        engine.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
