"""Who holds a live run: an owner id per process, a heartbeat thread, and a liveness test that
another process (on this machine or another) uses before taking a run over."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from types import TracebackType

from tether.ledger import Ledger

HEARTBEAT_S = 5.0
LEASE_S = 30.0  # a holder on another machine silent this long is presumed dead

_TOKEN = secrets.token_hex(4)


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_TOKEN}"


def holder_alive(owner: str | None, heartbeat_at: float | None, now: float | None = None) -> bool:
    """A holder on this machine is alive while its process is; elsewhere, while it heartbeats."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text, _, token = rest.partition(":")
    if host == socket.gethostname() and pid_text.isdigit():
        if int(pid_text) == os.getpid():
            return token == _TOKEN
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return heartbeat_at is not None and (now or time.time()) - heartbeat_at < LEASE_S


def describe_holder(owner: str, heartbeat_at: float | None) -> str:
    host, _, rest = owner.partition(":")
    age = f", last heartbeat {time.time() - heartbeat_at:.0f}s ago" if heartbeat_at else ""
    return f"pid {rest.partition(':')[0]} on {host}{age}"


class Heartbeat:
    """Keeps a run's lease fresh while a long tool command runs and no events are appended."""

    def __init__(self, ledger: Ledger, run_id: str, owner: str):
        self.ledger, self.run_id, self.owner = ledger, run_id, owner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.ledger.heartbeat(self.run_id, self.owner)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
