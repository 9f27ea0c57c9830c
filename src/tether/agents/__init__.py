"""Agent architectures and their tools. Each architecture is a function that drives a run through
its guard until the guard ends it (by raising RunEnded)."""

from __future__ import annotations

from collections.abc import Callable

from tether.agents.harness import run_harness
from tether.agents.orchestrated import run_orchestrated
from tether.guard.guard import Guard
from tether.ledger import StoredEvent

Architecture = Callable[[Guard, str, str, list[StoredEvent]], None]
ARCHITECTURES: dict[str, Architecture] = {"harness": run_harness, "orchestrated": run_orchestrated}


def run_agent(guard: Guard, system_prompt: str, task: str, events: list[StoredEvent]) -> None:
    ARCHITECTURES[guard.policy.agent.architecture](guard, system_prompt, task, events)
