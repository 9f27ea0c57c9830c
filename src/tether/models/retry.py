"""Model calls that survive a flaky provider: transient errors are retried with exponential
back-off (or the server's retry-after), each attempt reported to the caller, until the policy's
number of retries is used."""

from __future__ import annotations

import time
from collections.abc import Callable

from tether.models.base import Message, ModelError, ModelResponse, Provider, ToolSpec, TransientModelError

MAX_DELAY_S = 60.0


class RetriesExhausted(Exception):
    """The provider kept failing transiently: not the task's fault, worth trying again later."""

    def __init__(self, error: TransientModelError, attempts: int, retry_at: float):
        super().__init__(f"model kept failing after {attempts} attempts: {error}")
        self.error, self.attempts, self.retry_at = error, attempts, retry_at


# (attempt, the error, seconds until the next attempt or None when there is none)
OnError = Callable[[int, ModelError, float | None], None]


def complete_with_retries(provider: Provider, messages: list[Message], tools: list[ToolSpec], max_output_tokens: int,
                          max_retries: int, retry_base_s: float, on_error: OnError,
                          before_retry: Callable[[], None] = lambda: None,
                          deadline: float | None = None) -> tuple[ModelResponse, float]:
    """(the response, seconds the successful attempt took). A permanent ModelError is raised as is;
    `before_retry` may raise to stop waiting (a wall-time budget that ran out), and no wait goes
    past the `deadline` (each attempt is given it too)."""
    attempt = 0
    while True:
        attempt += 1
        started = time.perf_counter()
        try:
            response = provider.complete(messages, tools, max_output_tokens, deadline)
            return response, time.perf_counter() - started
        except TransientModelError as exc:
            delay = min(MAX_DELAY_S, exc.retry_after_s or retry_base_s * 2 ** (attempt - 1))
            if attempt > max_retries:
                on_error(attempt, exc, None)
                raise RetriesExhausted(exc, attempt, time.time() + delay) from exc
            if deadline is not None:
                delay = max(0.0, min(delay, deadline - time.time()))
            on_error(attempt, exc, delay)
            time.sleep(delay)
            before_retry()
        except ModelError as exc:
            on_error(attempt, exc, None)
            raise
