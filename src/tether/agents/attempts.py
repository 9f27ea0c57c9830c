"""Attempts (`[agent] attempts = k`): up to k independent tries at the task. Each starts from the
base tree with a fresh conversation and a provider that samples with a seed of its own; the step
budget and the brakes count from its start, while the run's tokens, money and time are shared. A try
ends when it runs out of steps or a brake stops it; the first whose required checks pass ends the
run. Every try is recorded (attempt_started, attempt_ended), so a resumed run goes on in the try it
was in, and a replay gives each try its own recorded turns."""

from __future__ import annotations

from collections.abc import Callable

from tether.agents.session import Session
from tether.guard.decisions import RunStopped
from tether.ledger import StoredEvent
from tether.ledger import events as ev

Architecture = Callable[[Session, str, str, list[StoredEvent]], None]


def ends_attempt(rule: str) -> bool:
    """A try that used its steps or was braked is over; a budget of the run's, or a person, ends the run."""
    return rule == "budget.max_steps" or rule.startswith("brakes.")


def current_attempt(events: list[StoredEvent]) -> tuple[int | None, bool, list[StoredEvent]]:
    """(the last attempt begun, whether it has ended, the events since it began)."""
    attempt, ended, since = None, False, list(events)
    for index, event in enumerate(events):
        if isinstance(event.data, ev.AttemptStarted):
            attempt, ended, since = event.data.attempt, False, events[index + 1:]
        elif isinstance(event.data, ev.AttemptEnded):
            ended = True
    return attempt, ended, since


def run_attempts(session: Session, architecture: Architecture, system_prompt: str, task: str,
                 events: list[StoredEvent]) -> None:
    attempts = session.policy.agent.attempts
    attempt, ended, since = current_attempt(events)
    if attempt is None or ended:
        attempt = _begin(session, 0 if attempt is None else attempt + 1)
        since = []
    provider = session.provider
    while True:
        session.provider, session.attempt = provider.for_attempt(attempt), attempt
        try:
            architecture(session, system_prompt, task, since)
        except RunStopped as stopped:
            if not ends_attempt(stopped.rule) or attempt + 1 >= attempts:
                if attempts > 1 and ends_attempt(stopped.rule):
                    raise RunStopped(f"none of {attempts} attempts passed the required checks; the last: "
                                     f"{stopped.reason}", stopped.rule) from stopped
                raise
            session.record(ev.AttemptEnded(attempt=attempt, reason=stopped.reason, rule=stopped.rule,
                                           tree=session.tree))
            attempt, since = _begin(session, attempt + 1), []
        finally:
            session.provider = provider


def _begin(session: Session, attempt: int) -> int:
    session.back_to(session.base_tree)
    session.record(ev.AttemptStarted(attempt=attempt, tree=session.base_tree))
    return attempt
