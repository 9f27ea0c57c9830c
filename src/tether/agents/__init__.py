"""Agent architectures and their tools. Each architecture is a function that drives a run's session
until the guard ends it (by raising RunEnded)."""

from __future__ import annotations

from tether.agents.attempts import Architecture, run_attempts
from tether.agents.factory import run_factory
from tether.agents.harness import run_harness
from tether.agents.orchestrated import run_orchestrated
from tether.agents.research import run_research
from tether.agents.session import Session
from tether.ledger import StoredEvent

ARCHITECTURES: dict[str, Architecture] = {"harness": run_harness, "orchestrated": run_orchestrated,
                                          "research": run_research, "factory": run_factory}


def run_agent(session: Session, system_prompt: str, task: str, events: list[StoredEvent]) -> None:
    architecture = ARCHITECTURES[session.policy.agent.architecture]
    if session.policy.agent.attempts > 1:
        run_attempts(session, architecture, system_prompt, task, events)
    else:
        architecture(session, system_prompt, task, events)
