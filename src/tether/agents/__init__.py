"""Agent architectures and their tools. Each architecture is a function that drives a run's session
until the guard ends it (by raising RunEnded)."""

from __future__ import annotations

from collections.abc import Callable

from tether.agents.harness import run_harness
from tether.agents.orchestrated import run_orchestrated
from tether.agents.session import Session
from tether.ledger import StoredEvent

Architecture = Callable[[Session, str, str, list[StoredEvent]], None]
ARCHITECTURES: dict[str, Architecture] = {"harness": run_harness, "orchestrated": run_orchestrated}


def run_agent(session: Session, system_prompt: str, task: str, events: list[StoredEvent]) -> None:
    ARCHITECTURES[session.policy.agent.architecture](session, system_prompt, task, events)
