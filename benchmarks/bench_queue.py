"""The task queue: dispatch latency (a task submitted to an idle worker, until its run's first event)
against a run started directly in one process (the floor), and throughput (tasks per second for 1, 2
and 4 worker processes) against the same runs one after another with no queue (the baseline), on
SQLite and on PostgreSQL, with a no-op scripted agent (one submit, no checks).

    .venv/bin/python benchmarks/bench_queue.py [--tasks 100] [--latency 30] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]

A task here is a whole run: worktree, events, delivery commit, worktree removal, plus the queue's
dequeue, the workflow's step records and the repository-slot rows."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text

from tether.ledger import Ledger
from tether.ledger.store import new_run_id
from tether.policy import Policy
from tether.queue.tasks import Tasks
from tether.runner import RunSpec, start_run

SAMPLE = Path(__file__).parents[1] / "src" / "tether" / "samples" / "raindrops"
console = Console(stderr=True)


def make_repo(root: Path) -> Path:
    repo = root / f"repo-{uuid.uuid4().hex[:6]}"
    shutil.copytree(SAMPLE, repo)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.email=b@b", "-c", "user.name=b", "commit", "-qm", "s"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / ".git" / "info" / "exclude").write_text(".tether/\n")
    return repo


def baseline(root: Path, model: str, tasks: int) -> float:
    repo = make_repo(root)
    ledger = Ledger(f"sqlite:///{root / 'baseline.db'}")
    started = time.perf_counter()
    for _ in range(tasks):
        start_run(ledger, RunSpec("no-op", repo, Policy(), model=model))
    return tasks / (time.perf_counter() - started)


def _first_event_after(ledger: Ledger, run_id: str, since: float) -> float:
    return ledger.events(run_id)[0].ts - since


def direct_latency(root: Path, model: str, count: int) -> list[float]:
    """The floor: from calling start_run to its run's first event, in one process."""
    repo = make_repo(root)
    ledger = Ledger(f"sqlite:///{root / 'direct.db'}")
    latencies = []
    for _ in range(count):
        run_id = new_run_id()
        started = time.time()
        start_run(ledger, RunSpec("no-op", repo, Policy(), model=model, run_id=run_id))
        latencies.append(_first_event_after(ledger, run_id, started))
    return latencies


def queue_latency(db_url: str, root: Path, model: str, count: int) -> dict[str, list[float]]:
    """From submit (an idle worker waiting) to the run's first event, one task at a time, in parts:
    the submit call, and from its return to the run's first event."""
    repo = make_repo(root)
    ledger = Ledger(db_url)
    queue = Tasks(ledger)
    worker = subprocess.Popen([sys.executable, "-m", "tether", "worker", "--db", db_url, "--id", "lat"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts: dict[str, list[float]] = {"total": [], "submit": [], "after": []}
    try:
        for n in range(count + 1):  # the first one waits for the worker to start, and is not counted
            started = time.time()
            task_id, _ = queue.submit(f"no-op {n}", repo, model=model)
            submitted = time.time() - started
            while not ledger.has_run(task_id) or ledger.get_run(task_id).status != "succeeded":
                time.sleep(0.01)
            if n:
                total = _first_event_after(ledger, task_id, started)
                parts["total"].append(total)
                parts["submit"].append(submitted)
                parts["after"].append(total - submitted)
            time.sleep(0.2)  # the worker idle again, as a task arriving on a quiet queue finds it
    finally:
        worker.terminate()
        worker.wait()
        queue.close()
        ledger.close()
    return parts


@contextmanager
def store_url(store: str, root: Path, name: str, admin_url: str) -> Iterator[str]:
    """A new, empty store: a SQLite file under root, or a PostgreSQL database dropped afterwards."""
    if store == "sqlite":
        yield f"sqlite:///{root / f'{name}.db'}"
        return
    database = f"tether_bench_{uuid.uuid4().hex[:8]}"
    with create_engine(admin_url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f"CREATE DATABASE {database}"))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{database}"
    finally:
        with create_engine(admin_url, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(text(f"DROP DATABASE {database} WITH (FORCE)"))


def dispatch(db_url: str, root: Path, model: str, tasks: int, workers: int) -> float:
    repo = make_repo(root)
    ledger = Ledger(db_url)
    queue = Tasks(ledger)
    for n in range(tasks):
        queue.submit(f"no-op {n}", repo, model=model)
    queue.close()
    started = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-m", "tether", "worker", "--db", db_url, "--id", f"b{i}",
                                   "--idle-exit", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for i in range(workers)]
    while sum(1 for run in ledger.list_runs(limit=tasks + 1) if run.status == "succeeded") < tasks:
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    for process in processes:
        process.wait()
    ledger.close()
    return tasks / elapsed


def throughput(root: Path, model: str, tasks: int, pg: str) -> None:
    console.print(f"baseline: {tasks} runs one after another in one process, no queue ...")
    base = baseline(root, model, tasks)
    table = Table(title=f"Queue dispatch, {tasks} no-op tasks (baseline {base:.1f} runs/s, no queue)")
    for column in ("store", "workers", "tasks/s", "vs baseline"):
        table.add_column(column, justify="right")
    for store in ("sqlite", "postgres"):
        for workers in (1, 2, 4):
            console.print(f"{store}, {workers} worker(s) ...")
            with store_url(store, root, f"q{workers}", pg) as url:
                rate = dispatch(url, root, model, tasks, workers)
            table.add_row(store, str(workers), f"{rate:.1f}", f"{rate / base:.2f}x")
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100, help="tasks for the throughput rows (0: skip them)")
    parser.add_argument("--latency", type=int, default=30, help="tasks submitted one at a time for the latency rows")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tether-bench-queue-"))
    model_file = root / "noop.json"
    model_file.write_text(json.dumps([{"tool_calls": [{"name": "submit"}]}]))
    model = f"scripted:{model_file}"
    console.print(f"latency: {args.latency} runs started directly, then submitted one at a time ...")
    floor = statistics.median(direct_latency(root, model, args.latency))
    latency = Table(title=f"Dispatch latency, submit to the run's first event, median of {args.latency} "
                          f"(floor: start_run called directly, {floor * 1000:.1f} ms)")
    for column in ("store", "p50 ms", "p90 ms", "vs floor", "submit call, p50 ms",
                   "from its return, over the floor, p50 ms"):
        latency.add_column(column, justify="right")
    for store in ("sqlite", "postgres"):
        with store_url(store, root, "lat", args.pg) as url:
            found = queue_latency(url, root, model, args.latency)
        p50, p90 = statistics.median(found["total"]), statistics.quantiles(found["total"], n=10)[-1]
        latency.add_row(store, f"{p50 * 1000:.1f}", f"{p90 * 1000:.1f}", f"{p50 / floor:.2f}x",
                        f"{statistics.median(found['submit']) * 1000:.1f}",
                        f"{(statistics.median(found['after']) - floor) * 1000:.1f}")
    Console().print(latency)
    if args.tasks:
        throughput(root, model, args.tasks, args.pg)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
