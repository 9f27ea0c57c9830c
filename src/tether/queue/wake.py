"""Wake the workers when a task is queued, instead of having them poll: PostgreSQL's LISTEN/NOTIFY,
and beside a SQLite store (whose workers share one machine) a FIFO per worker in `queue.wake/`.
A wake only says "look now"; what to take is still decided by DBOS's dequeue in its transaction, so
a lost or spurious wake costs latency, never a task."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import select
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from sqlalchemy import text

from tether.ledger import Ledger
from tether.queue.places import postgres_url, wake_folder

CHANNEL = "tether_queue"
STALE_FIFO_S = 60.0  # a FIFO nobody has read for this long belongs to a worker that died
RECONNECT_S = 1.0


def notify(ledger: Ledger) -> None:
    """Tell every worker of this store to look at the queue now. Call after the enqueue committed."""
    folder = wake_folder(ledger.url)
    if folder is None:
        with ledger.engine.begin() as conn:
            conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})
        return
    if not folder.is_dir():
        return  # no worker has ever listened here
    for entry in folder.iterdir():
        _poke(entry)


def _poke(fifo: Path) -> None:
    try:
        # O_NOFOLLOW and the FIFO check: a byte is never written through a link or into a file.
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError as error:
        if error.errno == errno.ENXIO:  # a FIFO with no reader: its worker is gone
            with contextlib.suppress(OSError):
                if time.time() - fifo.lstat().st_mtime > STALE_FIFO_S:
                    fifo.unlink()
        return
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            with contextlib.suppress(BlockingIOError):  # full: a wake is already pending
                os.write(fd, b"\n")
    finally:
        os.close(fd)


class Listener:
    """Calls `wake` whenever a task may have been queued, from its own thread, until `close()`.
    It also calls it once on start (and after a reconnect), for what was queued unheard."""

    def __init__(self, ledger_url: str, wake: Callable[[], None]):
        self._wake = wake
        self._stop_read, self._stop_write = os.pipe()
        self._closed = threading.Event()
        folder = wake_folder(ledger_url)
        if folder is not None:
            folder.mkdir(mode=0o700, exist_ok=True)
            self._fifo: Path | None = folder / f"{os.getpid()}-{secrets.token_hex(4)}"
            os.mkfifo(self._fifo, 0o600)
            # Read and write: the FIFO then always has a writer, so it never reads as closed.
            self._fifo_fd = os.open(self._fifo, os.O_RDWR | os.O_NONBLOCK)
            target: Callable[[], None] = self._read_fifo
        else:
            self._fifo = None
            self._url = postgres_url(ledger_url)
            target = self._listen_postgres
        self._thread = threading.Thread(target=target, name="tether-queue-wake", daemon=True)
        self._thread.start()

    def _read_fifo(self) -> None:
        self._wake()
        while True:
            ready, _, _ = select.select([self._fifo_fd, self._stop_read], [], [])
            if self._stop_read in ready:
                return
            with contextlib.suppress(BlockingIOError):
                while os.read(self._fifo_fd, 4096):
                    pass
            self._wake()

    def _listen_postgres(self) -> None:
        while not self._closed.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._wake()
                    conn_fd = conn.pgconn.socket
                    while not self._closed.is_set():
                        ready, _, _ = select.select([conn_fd, self._stop_read], [], [])
                        if self._stop_read in ready:
                            return
                        if any(True for _ in conn.notifies(timeout=0)):
                            self._wake()
            except psycopg.Error:
                if self._closed.wait(RECONNECT_S):
                    return

    def close(self) -> None:
        self._closed.set()
        os.write(self._stop_write, b"x")
        self._thread.join(timeout=5)
        os.close(self._stop_read)
        os.close(self._stop_write)
        if self._fifo is not None:
            os.close(self._fifo_fd)
            with contextlib.suppress(FileNotFoundError):
                self._fifo.unlink()
