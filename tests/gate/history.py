"""Finished runs as workers record them, for measuring tiers and canaries over a known history."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from tests.conftest import typed
from tether.ledger import Ledger
from tether.ledger import events as ev

REPO = "/srv/repos/shop"
CONFIG = "harness openai:gpt-4o #0123abcd"


def history(ledger: Ledger, results: list[str], *, configuration: str = CONFIG, repo: str = REPO,
            mode: str = "branch", latency_s: float = 60.0, usd: float = 0.1, source: str = "queue",
            canary: str | None = None, arms: list[str] | None = None) -> list[str]:
    """Finished runs as a worker would have recorded them: "fix" succeeded (and was delivered when
    the mode asks for it), "undelivered" succeeded but never left the machine, "fail" failed."""
    ids = []
    for index, result in enumerate(results):
        run_id = f"run-{uuid.uuid4().hex[:12]}"
        status = "failed" if result == "fail" else "succeeded"
        ledger.create_run(run_id, repo=repo, instruction="a task", source=source, status=status)
        start = time.time() - latency_s
        batch: list[tuple[ev.Payload, float]] = [
            (ev.RunStarted(task="a task", repo=repo, configuration=configuration, tier="observe",
                           policy={"delivery": {"mode": mode}}, canary=canary, arm=arms[index] if arms else None),
             start),
            (typed("model_response", {"cost_usd": usd}), start + 1),
        ]
        if result == "fix" and mode != "branch":
            batch.append((ev.Delivered(mode=mode, remote="origin", ref=f"tether/{run_id}", commit="c" * 40),
                          start + latency_s - 1))
        batch.append((ev.RunFinished(status=status, reason="checks passed" if status == "succeeded" else "failed"),
                      start + latency_s))
        ledger.record_many(run_id, batch)
        ids.append(run_id)
    return ids


def at_once(url: str, workers: int, action: Callable[[Ledger, int], object]) -> None:
    """`action` run by `workers` threads released together, each with a store of its own (as
    worker processes have), so they race on the same rows."""
    start = threading.Barrier(workers)

    def worker(n: int) -> None:
        own = Ledger(url)
        start.wait()
        try:
            action(own, n)
        finally:
            own.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
