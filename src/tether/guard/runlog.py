"""A run's log as the guard's memory: it appends typed events to the ledger (once each, even when a
resumed run redoes its last step), keeps the meters and brake tallies as folds over them, and
rebuilds all of it, with the approval decisions and the trees, from a recorded log."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tether.guard.brakes import BrakeHit, Brakes
from tether.ledger import Ledger, StoredEvent
from tether.ledger import events as ev
from tether.ledger.meters import Meters
from tether.models import ModelError, ModelResponse, TransientModelError
from tether.models.retry import OnError

EventSink = Callable[[StoredEvent, Meters], None]
# An approval decision: (approved, who decided, why).
Approval = tuple[bool, str, str]

# Markers of a run's life that may legitimately repeat (the environment is prepared again on every
# continue and resume); everything else is written at most once.
REPEATABLE = {ev.EventType.RUN_CONTINUED, ev.EventType.RUN_RESUMED, ev.EventType.RUN_PAUSED,
              ev.EventType.APPROVAL_DECIDED, ev.EventType.ENVIRONMENT}


def event_key(payload: ev.Payload) -> tuple[Any, ...]:
    """What makes an event the same event when a crashed run is resumed and redoes its last step."""
    return (payload.type, *(getattr(payload, name, None)
                            for name in ("step", "call_id", "attempt", "iteration", "candidate", "name", "rule",
                                                          "detector")))


@dataclass
class RunLog:
    run_id: str
    ledger: Ledger
    brakes: Brakes
    on_event: EventSink | None = None
    role: str | None = None  # the acting role, stamped on every event (see Session.role)
    meters: Meters = field(default_factory=Meters)
    recorded: set[tuple[Any, ...]] = field(default_factory=set)  # event keys already in the log
    decided: dict[str, Approval] = field(default_factory=dict)  # call id -> decision
    trees: dict[str | None, str] = field(default_factory=dict)  # role -> its last recorded tree
    last_tree: str | None = None  # the last tree recorded by anyone
    pending_hit: tuple[str | None, BrakeHit] | None = None  # (call id, brake) fired just before a crash
    submitted: bool = False  # a submit whose checks passed, recorded just before a crash

    def record(self, payload: ev.Payload, once: bool = True) -> BrakeHit | None:
        """Append an event (unless a resumed step already recorded it: `once`) and feed the brakes."""
        if self.role is not None:
            payload = payload.model_copy(update={"role": self.role})
        if once and payload.type not in REPEATABLE:
            key = event_key(payload)
            if key in self.recorded:
                return None
            self.recorded.add(key)
        event = self.ledger.record(self.run_id, payload)
        self.meters.observe(payload, event.ts)
        hit = self.brakes.observe(payload)
        if self.on_event is not None:
            self.on_event(event, self.meters)
        while self.brakes.shadow_hits:  # brakes in shadow mode that would have stopped the run here
            shadow = self.brakes.shadow_hits.pop(0)
            self.record(ev.BrakeShadowed(detector=shadow.detector, reason=shadow.reason, evidence=shadow.evidence,
                                         call_id=getattr(payload, "call_id", None), step=self.meters.steps))
        return hit

    def shadow(self, rule: str, reason: str, call_id: str | None = None) -> None:
        """A budget in shadow mode would have stopped the run: recorded the first time, and it goes on."""
        if rule not in self.brakes.shadowed:
            self.record(ev.BrakeShadowed(detector=rule, reason=reason, call_id=call_id, step=self.meters.steps))

    def model_request(self, step: int, messages: int, prompt_text: str, prompt_tokens: int,
                      tools_removed: list[str] = ()) -> None:
        self.record(ev.ModelRequest(step=step, messages=messages, prompt_tokens_est=prompt_tokens,
                                    messages_digest=hashlib.sha256(prompt_text.encode()).hexdigest(),
                                    **({"tools_removed": list(tools_removed)} if tools_removed else {})))

    def model_errors(self, step: int) -> OnError:
        """What records each failed attempt of the model call at `step` (for complete_with_retries)."""
        def on_error(attempt: int, error: ModelError, retry_in_s: float | None) -> None:
            self.record(ev.ModelError(step=step, attempt=attempt, error=str(error),
                                      transient=isinstance(error, TransientModelError), retry_in_s=retry_in_s))
        return on_error

    def model_response(self, step: int, response: ModelResponse, cost: float | None,
                       latency_s: float) -> BrakeHit | None:
        """Record a reply with its usage and cost (None: its price is unknown, counted as 0)."""
        return self.record(ev.ModelResponse(
            step=step, model=response.model, content=response.content,
            tool_calls=[ev.RecordedCall(**call.as_dict()) for call in response.tool_calls],
            usage=ev.RecordedUsage(input_tokens=response.usage.input_tokens,
                                   output_tokens=response.usage.output_tokens, estimated=response.usage.estimated),
            cost_usd=cost or 0.0, price_known=cost is not None, latency_s=round(latency_s, 4)))

    def replay(self, events: list[StoredEvent]) -> None:
        """Rebuild meters, brakes, trees, approval decisions and what has been recorded from the log,
        so a continued or resumed run goes on exactly where it was."""
        names: dict[str, str] = {}
        checks_passed: dict[str, bool] = {}  # call id -> its required checks all passed
        for event in events:
            payload = event.data
            self.meters.observe(payload, event.ts)
            hit = self.brakes.observe(payload)
            if hit is not None:
                self.pending_hit = (getattr(payload, "call_id", None), hit)
            if payload.type not in REPEATABLE:
                self.recorded.add(event_key(payload))
            if isinstance(payload, ev.ToolCall):
                names[payload.call_id] = payload.name
            elif isinstance(payload, ev.CheckFinished) and payload.call_id is not None:
                checks_passed[payload.call_id] = checks_passed.get(payload.call_id, True) \
                    and (payload.passed or not payload.required)
            elif isinstance(payload, ev.ToolResult | ev.Merge | ev.AttemptStarted):
                if payload.tree:
                    self.last_tree = self.trees[payload.role] = payload.tree
                # a submit, or the run's own write whose checks passed (check_after_write), ended the run
                self.submitted = isinstance(payload, ev.ToolResult) and bool(payload.ok) and (
                    names.get(payload.call_id) == "submit"
                    or (payload.role is None and checks_passed.get(payload.call_id, False)))
            elif isinstance(payload, ev.Brake | ev.RunFinished):
                self.pending_hit = None
            elif isinstance(payload, ev.ApprovalDecided):
                self.decided[payload.call_id] = (payload.approved, payload.by, payload.reason)
        self.brakes.shadow_hits.clear()  # what a shadowed brake saw here is in the log already
