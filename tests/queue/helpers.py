"""Worker and submitter processes for the queue tests: real processes on a real store."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tether.ledger import Ledger

TETHER = [sys.executable, "-m", "tether"]


def start_worker(db_url: str, worker_id: str, log: Path, concurrency: int = 1,
                 idle_exit: float | None = None, rescan: float | None = None) -> subprocess.Popen[bytes]:
    args = [*TETHER, "worker", "--db", db_url, "--id", worker_id, "--concurrency", str(concurrency)]
    if rescan is not None:
        args += ["--rescan", str(rescan)]
    if idle_exit is not None:
        args += ["--idle-exit", str(idle_exit)]
    return subprocess.Popen(args, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def tether(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TETHER, *args], capture_output=True, text=True, cwd=cwd)


def submit_json(db_url: str, repo: Path, instruction: str, model: str, *extra: str) -> dict[str, Any]:
    result = tether("submit", instruction, "--repo", str(repo), "--model", model, "--db", db_url, "--json", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.2)


def statuses(ledger: Ledger) -> dict[str, str]:
    return {run.id: run.status for run in ledger.list_runs(limit=10_000)}


def stop(processes: list[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
