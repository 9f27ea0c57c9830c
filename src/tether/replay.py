"""Replay a recorded run: feed its recorded model responses (never calling a model) through the
same guard and sandbox in a fresh worktree from the same base commit, and compare each step with
the record. Under another policy, report where that policy would have decided differently."""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tether.guard.brakes import VOLATILE
from tether.guard.runlog import EventSink
from tether.ledger import Ledger, StoredEvent
from tether.ledger import events as ev
from tether.models import Message, ModelError, ModelResponse, ToolCall, ToolSpec, Usage
from tether.policy import Policy
from tether.runner import RunError, RunSpec, agent_of, start_run


def _unprefixed(responses: list[ev.ModelResponse], prefix: str) -> list[ev.ModelResponse]:
    """The responses with the prefix the guard put on their call ids (a role's, an attempt's) undone."""
    return [r.model_copy(update={"tool_calls": [c.model_copy(update={"id": c.id.removeprefix(prefix)})
                                                for c in r.tool_calls]}) for r in responses]


class RecordedProvider:
    """The recorded model turns of a run, in order; the turn index is the number of assistant
    messages so far, exactly as when the run was recorded."""

    format_hint = None

    def __init__(self, run_id: str, responses: list[ev.ModelResponse], attempts: list[int] | None = None):
        self.name = f"replay:{run_id}"
        self.responses = responses
        self.attempts = attempts or [0] * len(responses)  # the attempt of each response

    def for_role(self, role: str) -> RecordedProvider:
        """The turns one role of an orchestrated run saw, with the ids the guard gave them undone."""
        own = [r for r in self.responses if r.role == role]
        return RecordedProvider(self.name.removeprefix("replay:"), _unprefixed(own, f"{role}."))

    def for_attempt(self, attempt: int) -> RecordedProvider:
        """The turns of one attempt, with the ids the guard gave them undone."""
        own = [r for r, of in zip(self.responses, self.attempts, strict=True) if of == attempt]
        return RecordedProvider(self.name.removeprefix("replay:"), _unprefixed(own, f"a{attempt}."))

    def complete(self, messages: list[Message], tools: list[ToolSpec], max_output_tokens: int,
                 deadline: float | None = None) -> ModelResponse:
        index = sum(1 for message in messages if message["role"] == "assistant")
        if index >= len(self.responses):
            raise ModelError(f"the recording has no model turn {index + 1} (it has {len(self.responses)})")
        recorded = self.responses[index]
        usage = recorded.usage
        return ModelResponse(
            content=recorded.content,
            tool_calls=[ToolCall(c.id, c.name, c.arguments) for c in recorded.tool_calls],
            usage=Usage(usage.input_tokens, usage.output_tokens, usage.estimated),
            model=recorded.model,
            cost_usd=recorded.cost_usd,
        )


@dataclass
class Step:
    """What the guard and the world did with one tool call."""

    call_id: str
    step: int
    tool: str
    decisions: list[str] = field(default_factory=list)  # "deny commands.deny", ...
    executed: bool | None = None
    exit_code: int | None = None
    output_digest: str | None = None
    tree: str | None = None
    observation: str = ""
    stop: str | None = None  # a brake or budget that ended the run at this call


def steps_of(events: list[StoredEvent]) -> dict[str, Step]:
    steps: dict[str, Step] = {}
    for event in events:
        data = event.data
        call_id = getattr(data, "call_id", None)
        if isinstance(data, ev.ToolCall):
            steps[data.call_id] = Step(data.call_id, data.step, data.name)
        elif call_id in steps:
            step = steps[call_id]
            if isinstance(data, ev.PolicyDecision) and data.verdict != "allow":
                step.decisions.append(f"{data.verdict} {data.rule}")
                if data.verdict == "stop":
                    step.stop = data.rule
            elif isinstance(data, ev.Brake):
                step.stop = f"brakes.{data.detector}"
            elif isinstance(data, ev.ToolResult):
                step.executed = data.executed
                step.exit_code = data.exit_code
                step.observation = data.observation
                step.output_digest = data.output_digest or hashlib.sha256(data.observation.encode()).hexdigest()
                step.tree = data.tree
    return steps


def _outputs_match(a: Step, b: Step) -> tuple[bool, bool]:
    """(equal, equal only after masking durations and addresses)."""
    if a.output_digest == b.output_digest and a.observation == b.observation:
        return True, False
    masked = VOLATILE.sub("<volatile>", a.observation) == VOLATILE.sub("<volatile>", b.observation)
    return masked, masked


@dataclass
class Divergence:
    call_id: str
    step: int
    tool: str
    field: str
    recorded: Any
    replayed: Any
    diff: str = ""


@dataclass
class ReplayReport:
    original_run_id: str
    replay_run_id: str
    policy: str  # "recorded" or the file replayed against
    identical: bool
    steps_compared: int
    masked_outputs: int  # outputs equal only after masking durations and addresses
    divergences: list[Divergence]
    original_status: str
    replay_status: str
    replay_reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(original: dict[str, Step], replayed: dict[str, Step],
            first_only: bool) -> tuple[list[Divergence], int, int]:
    divergences: list[Divergence] = []
    masked = 0
    compared = 0
    for call_id, before in original.items():
        after = replayed.get(call_id)
        if after is None:
            divergences.append(Divergence(call_id, before.step, before.tool, "reached", True, False))
            if first_only:
                break
            continue
        compared += 1
        fields = [("decisions", before.decisions, after.decisions), ("stop", before.stop, after.stop),
                  ("executed", before.executed, after.executed), ("exit_code", before.exit_code, after.exit_code)]
        found = [Divergence(call_id, before.step, before.tool, name, a, b) for name, a, b in fields if a != b]
        if not found:
            equal, only_masked = _outputs_match(before, after)
            masked += only_masked
            if not equal:
                diff = "".join(difflib.unified_diff(before.observation.splitlines(True),
                                                    after.observation.splitlines(True), "recorded", "replayed"))
                found.append(Divergence(call_id, before.step, before.tool, "output", before.output_digest,
                                        after.output_digest, diff))
            elif before.tree != after.tree:
                found.append(Divergence(call_id, before.step, before.tool, "tree", before.tree, after.tree))
        divergences += found
        if found and first_only:
            break
    return divergences, compared, masked


def replay_run(ledger: Ledger, run_ref: str, policy: Policy | None = None, policy_name: str = "recorded",
               on_event: EventSink | None = None) -> ReplayReport:
    run = ledger.get_run(run_ref)
    events = ledger.events(run.id)
    started = events[0].data if events else None
    if not isinstance(started, ev.RunStarted):
        raise RunError(f"run {run.id} has no run_started event; nothing to replay")
    if started.repo is None or started.base_commit is None:
        raise RunError(f"run {run.id} was imported; it has no repository to replay in")
    if run.status in ("running", "awaiting_approval"):
        raise RunError(f"run {run.id} is {run.status}; replay a run once it has ended")
    responses, attempts, attempt = [], [], 0
    for event in events:
        if isinstance(event.data, ev.AttemptStarted):
            attempt = event.data.attempt
        elif isinstance(event.data, ev.ModelResponse):
            responses.append(event.data)
            attempts.append(attempt)
    decisions = {e.data.call_id: (e.data.approved, e.data.by, e.data.reason)
                 for e in events if isinstance(e.data, ev.ApprovalDecided)}

    def recorded_decision(request: dict[str, Any]) -> tuple[bool, str, str]:
        return decisions.get(request["call_id"], (False, "replay", "no decision was recorded for this request"))

    spec = RunSpec(
        instruction=started.task, repo=Path(started.repo),
        policy=policy or Policy.model_validate(started.policy), base_commit=started.base_commit,
        system_prompt=started.system_prompt, source="replay", parent_run_id=run.id,
        agent=agent_of(started),  # an external agent runs again, the gateway serving the recorded replies
        requested_by=started.requested_by or started.user,  # so the recorded approvers decide as they did
        memory=started.memory or [],  # what the recorded run was given, not what memory holds now
    )
    summary = start_run(ledger, spec, on_event=on_event, approver=recorded_decision,
                        provider=RecordedProvider(run.id, responses, attempts))
    divergences, compared, masked = compare(steps_of(events), steps_of(ledger.events(summary["run_id"])),
                                            first_only=policy is None)
    return ReplayReport(
        original_run_id=run.id, replay_run_id=summary["run_id"], policy=policy_name,
        identical=not divergences, steps_compared=compared, masked_outputs=masked, divergences=divergences,
        original_status=run.status, replay_status=summary["status"], replay_reason=summary["reason"],
    )
