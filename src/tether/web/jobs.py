"""Work a page starts and does not wait for: continuing a run after a decision, a replay, a comparison
under another policy. Each runs in a thread of its own with its own connection to the store; the
page polls the job and shows its result when it is done."""

from __future__ import annotations

import secrets
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from tether.errors import TetherError
from tether.ledger import Ledger


@dataclass
class Job:
    id: str
    what: str
    by: str
    started_at: float = field(default_factory=time.time)
    state: str = "running"  # running, done, failed
    result: str = ""
    link: str | None = None  # a page to see the outcome (the replay's run)


class Jobs:
    def __init__(self, db_url: str, keep: int = 200):
        self.db_url = db_url
        self.keep = keep
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()

    def start(self, what: str, by: str, work: Callable[[Ledger], tuple[str, str | None]]) -> Job:
        """Run `work` (returning what to say, and a link) in the background."""
        job = Job(secrets.token_hex(6), what, by)
        with self.lock:
            self.jobs[job.id] = job
            for old in list(self.jobs)[: max(0, len(self.jobs) - self.keep)]:
                if self.jobs[old].state != "running":
                    del self.jobs[old]

        def body() -> None:
            ledger = Ledger(self.db_url)
            try:
                job.result, job.link = work(ledger)
                job.state = "done"
            except TetherError as exc:
                job.result, job.state = str(exc), "failed"
            except Exception as exc:  # shown on the page; the server goes on
                job.result, job.state = f"internal error: {exc!r}", "failed"
                traceback.print_exc()
            finally:
                ledger.close()

        threading.Thread(target=body, name=f"tether-job-{job.id}", daemon=True).start()
        return job

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            return self.jobs.get(job_id)

    def wait(self, timeout_s: float = 60) -> None:
        """Until no job runs (tests, and a server shutting down)."""
        deadline = time.time() + timeout_s
        while time.time() < deadline and any(job.state == "running" for job in list(self.jobs.values())):
            time.sleep(0.05)
