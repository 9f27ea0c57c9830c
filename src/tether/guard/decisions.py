"""What the guard can say about an action, and how a run leaves the agent loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tether.ledger import events as ev

Verdict = Literal["allow", "deny", "ask", "stop"]


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    rule: str = ""
    reason: str = ""
    paths: list[str] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)

    def as_event(self, step: int | None, call_id: str | None = None, rolled_back: bool = False) -> ev.PolicyDecision:
        return ev.PolicyDecision(verdict=self.verdict, rule=self.rule, reason=self.reason, paths=self.paths,
                                 owners=self.owners, step=step, call_id=call_id, rolled_back=rolled_back)


ALLOW = Decision("allow")


class RunEnded(Exception):
    """Leaves the agent loop with a final status."""

    status = "failed"

    def __init__(self, reason: str, rule: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.rule = rule


class RunSucceeded(RunEnded):
    status = "succeeded"


class RunStopped(RunEnded):
    """A brake, a budget or a person stopped the run; the work is kept."""

    status = "stopped"


class RunFailed(RunEnded):
    status = "failed"


class RunPaused(RunEnded):
    """Waiting for a human decision; the run is continued from its events once it is made."""

    status = "awaiting_approval"


class RunHeld(RunEnded):
    """Halted at a step boundary by something outside the run: the kill switch (status stopped), a
    fleet limit or a model that keeps failing (status waiting, until retry_at). Nothing is
    delivered yet; the worktree is kept and the run is resumed from its events."""

    def __init__(self, reason: str, rule: str, status: str = "stopped", retry_at: float | None = None):
        super().__init__(reason, rule)
        self.status = status
        self.retry_at = retry_at


class RoleDone(Exception):
    """An executor of the orchestrated architecture handed its subtask over (it submitted, or its
    checks passed after a write); the run goes on with the next role."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
