"""The web app's server time with 100,000 runs in the store, against the same queries run directly.

    .venv/bin/python benchmarks/bench_web.py [--runs 100000] [--events 500] [--postgres] [--requests 20]

For each page: the median time `tether serve` takes to answer it over loopback HTTP (a signed-in
session, the page rendered whole) and the median time of the library query the page is built on,
run directly in the same process; the ratio, and the page time against the 100 ms target. Pages:
the runs page (first page, a filtered page, a page deep in the history) and a run of 500 events.
--postgres runs it against a fresh database on 127.0.0.1:5432 too."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import uvicorn
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, insert, text

from tether.ledger import Ledger, tokens
from tether.ledger import events as ev
from tether.ledger.schema import runs
from tether.ledger.store import RunFilter
from tether.web.app import make_app

console = Console()
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_MS = 100


def fill(ledger: Ledger, count: int, events: int) -> str:
    """`count` runs with summaries like real ones, and one run of `events` events; its id."""
    start = time.time() - count
    statuses = ("succeeded", "failed", "stopped", "succeeded")
    batch = []
    for n in range(count):
        summary = {"run_id": f"r{n:07d}", "status": statuses[n % 4], "usage": {"usd": 0.01 * (n % 7), "steps": n % 30,
                   "tokens": 1000 + n}, "checks": [{"name": "tests", "passed": n % 4 != 1}], "interrupts": n % 3}
        batch.append({"id": f"2026-{n:07d}", "created_at": start + n, "updated_at": start + n, "source": "live",
                      "status": statuses[n % 4], "repo": f"/srv/repo-{n % 20}", "instruction": f"task {n}",
                      "model": ("openai:gpt-4o-mini", "local:qwen2.5-coder-1.5b")[n % 2], "architecture": "harness",
                      "event_count": 0, "head_hash": "0" * 64, "summary": json.dumps(summary)})
        if len(batch) == 5000:
            with ledger.engine.begin() as conn:
                conn.execute(insert(runs), batch)
            batch = []
    if batch:
        with ledger.engine.begin() as conn:
            conn.execute(insert(runs), batch)
    run_id = "2026-long-run"
    ledger.create_run(run_id, repo="/srv/repo-0", instruction="a long run", model="scripted", architecture="harness")
    payloads: list[tuple[ev.Payload, float]] = [(ev.RunStarted(task="a long run"), time.time())]
    for step in range(events - 1):
        if step % 2:
            payloads.append((ev.ToolResult(step=step, call_id=f"c{step}", executed=True, ok=True, exit_code=0,
                                           output_digest=None, duration_s=0.1, tree=None,
                                           observation="ok\n" * 40), time.time()))
        else:
            payloads.append((ev.ToolCall(step=step, call_id=f"c{step}", name="bash",
                                         arguments={"command": f"pytest -q tests/test_{step}.py"}), time.time()))
    ledger.record_many(run_id, payloads)
    return run_id


def median_ms(call: Callable[[], object], repeats: int) -> float:
    call()  # warm: templates compiled, statements prepared, pages cached by the OS
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(url: str, label: str, run_count: int, events: int, repeats: int) -> list[list[str]]:
    ledger = Ledger(url)
    started = time.perf_counter()
    long_run = fill(ledger, run_count, events)
    console.print(f"{label}: {run_count:,} runs and a run of {events} events written in "
                  f"{time.perf_counter() - started:.1f} s")
    token, _ = tokens.create(ledger, "bench", "viewer", "bench")
    port = 8000 + uuid.uuid4().int % 1000
    server = uvicorn.Server(uvicorn.Config(make_app(url), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    client.post("/signin", data={"token": token, "next": "/runs"})
    deep = ledger.runs_page(RunFilter(), limit=1)[0].created_at - run_count // 2
    pages = [
        ("runs, first page", "/runs", lambda: ledger.runs_page(RunFilter(), limit=51)),
        ("runs, status=failed", "/runs?status=failed", lambda: ledger.runs_page(RunFilter(status="failed"), limit=51)),
        ("runs, 50,000 back", f"/runs?before={deep}:2026-9999999",
         lambda: ledger.runs_page(RunFilter(), (deep, "2026-9999999"), limit=51)),
        (f"a run of {events} events", f"/runs/{long_run}", lambda: ledger.events(long_run)),
    ]
    rows = []
    for name, path, query in pages:
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
        page_ms = median_ms(lambda path=path: client.get(path), repeats)
        query_ms = median_ms(query, repeats)
        rows.append([label, name, f"{page_ms:.1f}", f"{query_ms:.1f}", f"{page_ms / query_ms:.1f}x",
                     "yes" if page_ms < TARGET_MS else "NO"])
    server.should_exit = True
    thread.join(timeout=10)
    ledger.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += measure(f"sqlite:///{Path(tmp) / 'web.db'}", "SQLite", args.runs, args.events, args.requests)
    if args.postgres:
        name = f"tether_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        try:
            rows += measure(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", "PostgreSQL", args.runs,
                            args.events, args.requests)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    table = Table("store", "page", "server ms (p50)", "query alone ms", "ratio", f"under {TARGET_MS} ms",
                  title=f"tether serve with {args.runs:,} runs")
    for row in rows:
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    main()
