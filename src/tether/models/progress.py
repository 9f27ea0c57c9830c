"""How far the model call in progress has got, for a live line on screen. Whoever shows progress
starts a `Generation` when a call begins; a provider that streams reports its tokens so far. Per
thread: a worker's concurrent runs each see their own."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class Generation:
    started: float = field(default_factory=time.monotonic)
    tokens: int | None = None  # None: the provider does not stream, only the time is known

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


_local = threading.local()


def begin() -> Generation:
    _local.current = Generation()
    return _local.current


def end() -> None:
    _local.current = None


def report(tokens: int) -> None:
    """Called by a streaming provider as tokens arrive; a no-op when nobody watches."""
    current: Generation | None = getattr(_local, "current", None)
    if current is not None:
        current.tokens = tokens
