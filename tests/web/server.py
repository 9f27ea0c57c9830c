"""`tether serve` as a real process on a free loopback port, for the length of a test."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.gateway.serve import free_port

TETHER = [sys.executable, "-m", "tether"]


@contextmanager
def web_server(db_url: str, cwd: Path, *flags: str, log: Path | None = None) -> Iterator[str]:
    port = free_port()
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen([*TETHER, "serve", "--port", str(port), "--db", db_url, *flags], cwd=cwd,
                               stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        assert process.poll() is None, f"tether serve exited with {process.returncode}"
        try:
            if httpx.get(f"{url}/signin", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.time() < deadline, "tether serve did not answer within 30 s"
        time.sleep(0.1)
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        if log:
            out.close()  # type: ignore[union-attr]


def signed_in(url: str, token: str) -> httpx.Client:
    """A browser-like client with a session cookie (redirects not followed, so they can be checked)."""
    client = httpx.Client(base_url=url, timeout=30)
    answer = client.post("/signin", data={"token": token, "next": "/runs"})
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(page: str) -> str:
    marker = 'name="csrf" value="'
    start = page.index(marker) + len(marker)
    return page[start:page.index('"', start)]
