"""Derived views of a run, computed from its events (the record), never from agent memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tether.ledger import events as ev
from tether.ledger.chain import StoredEvent
from tether.ledger.meters import Meters
from tether.ledger.store import RunRow
from tether.policy.schema import Policy


def pending_approval(events: list[StoredEvent]) -> dict[str, Any] | None:
    """The approval request a run waits on, with its current owners and deadline (escalations
    included), or None."""
    open_requests: dict[str, dict[str, Any]] = {}
    for event in events:
        data = event.data
        if isinstance(data, ev.ApprovalRequested):
            open_requests[data.call_id] = data.model_dump(mode="json") | {"requested_at": event.ts,
                                                                          "escalated": False}
        elif isinstance(data, ev.ApprovalEscalated) and data.call_id in open_requests:
            open_requests[data.call_id].update(owners=data.owners, deadline=data.deadline, escalated=True)
        elif isinstance(data, ev.ApprovalDecided):
            open_requests.pop(data.call_id, None)
    return next(iter(open_requests.values()), None)


HELD = (ev.RunStatus.STOPPED, ev.RunStatus.WAITING)


def started_of(events: list[StoredEvent]) -> ev.RunStarted | None:
    first = events[0].data if events else None
    return first if isinstance(first, ev.RunStarted) else None


def run_policy(events: list[StoredEvent]) -> Policy | None:
    """The policy a run was started with (its snapshot in run_started); None for an imported run."""
    started = started_of(events)
    return Policy.model_validate(started.policy) if started is not None and started.policy is not None else None


def requester_of(events: list[StoredEvent]) -> str | None:
    """Who asked for the run: never its approver, nor a reviewer of its pull request."""
    started = started_of(events)
    return (started.requested_by or started.user) if started is not None else None


def finished_of(events: list[StoredEvent]) -> ev.RunFinished | None:
    return next((e.data for e in reversed(events) if isinstance(e.data, ev.RunFinished)), None)


def held_reason(events: list[StoredEvent]) -> ev.RunPaused | None:
    """Why a run is held at a step (the kill switch, a fleet limit, a failing model, Ctrl-C), or None
    when it is not: it runs, it ended, or it waits on an approval instead."""
    last = next((e.data for e in reversed(events) if e.type in ev.LIFECYCLE), None)
    return last if isinstance(last, ev.RunPaused) and last.held else None


def summarize(run: RunRow, events: list[StoredEvent]) -> dict[str, Any]:
    """The stable JSON shape printed by `tether run --json` and `tether show --json`."""
    meters = Meters()
    checks: dict[str, dict[str, Any]] = {}
    denials: list[dict[str, Any]] = []
    brakes: list[dict[str, Any]] = []
    shadowed: list[dict[str, Any]] = []  # what a brake or budget in shadow mode would have stopped, and when
    approvals: dict[str, dict[str, Any]] = {}
    model_errors = 0
    rework = 0
    attempts = 0
    interrupts = 0  # approval requests, denials by a person, manual stops
    finished: ev.RunFinished | None = None
    paused: ev.RunPaused | None = None  # why the run is paused or held now
    research: list[dict[str, Any]] = []  # the metric on the base, then each proposal's verdict
    factory = Factory()
    step = 0
    for event in events:
        data = event.data
        meters.observe(data, event.ts)
        if isinstance(data, ev.ModelRequest):
            step = data.step
        elif isinstance(data, ev.PolicyDecision) and data.verdict in ("deny", "stop"):
            denials.append({"step": step, "verdict": data.verdict, "rule": data.rule, "reason": data.reason,
                            "call_id": data.call_id})
        elif isinstance(data, ev.Brake):
            brakes.append({"step": step, "detector": data.detector, "reason": data.reason, "evidence": data.evidence})
        elif isinstance(data, ev.BrakeShadowed):
            shadowed.append({"step": data.step, "detector": data.detector, "reason": data.reason})
        elif isinstance(data, ev.ApprovalRequested):
            interrupts += 1
            approvals[data.call_id] = {"call_id": data.call_id, "step": data.step, "paths": data.paths,
                                       "owners": data.owners, "action": data.action, "decision": "pending",
                                       "diff": data.diff}
        elif isinstance(data, ev.ApprovalEscalated) and data.call_id in approvals:
            approvals[data.call_id].update(owners=data.owners, escalated_from=data.from_owners)
        elif isinstance(data, ev.ApprovalDecided):
            interrupts += not data.approved and data.by_person
            if data.call_id in approvals:
                approvals[data.call_id].update(decision="approved" if data.approved else "denied", by=data.by,
                                               reason=data.reason)
        elif isinstance(data, ev.CheckFinished):
            factory.checked(data)
            checks[data.name] = {"name": data.name, "required": data.required, "passed": data.passed,
                                 "exit_code": data.exit_code, "output_tail": "" if data.passed else data.output_tail}
        elif isinstance(data, ev.ToolResult):
            rework += data.rework
        elif isinstance(data, ev.ModelError):
            model_errors += 1
        elif isinstance(data, ev.AttemptStarted):
            attempts += 1
            factory.current = data.attempt
        elif isinstance(data, ev.CandidateScored | ev.JudgeInputs | ev.JudgeDecided):
            factory.observe(data)
        elif isinstance(data, ev.MetricMeasured) and data.iteration == 0:
            research.append({"iteration": 0, "median": data.median, "spread": data.spread, "kept": True,
                             "reason": "the base"})
        elif isinstance(data, ev.ResearchIteration):
            research.append({"iteration": data.iteration, "median": data.median, "spread": data.noise,
                             "kept": data.kept, "reason": data.reason})
        elif isinstance(data, ev.RunPaused):
            paused = data
            interrupts += data.rule in ("fleet.kill_switch", "manual")
        elif isinstance(data, ev.RunContinued | ev.RunResumed):
            paused = None
        elif isinstance(data, ev.RunFinished):
            finished = data
            interrupts += data.rule == "manual" and (paused is None or paused.rule != "manual")  # counted at Ctrl-C
    status = str(finished.status) if finished else run.status
    return {
        "run_id": run.id,
        "status": status,
        "reason": (finished and finished.reason) or (paused and paused.reason)
        or ("in progress" if status == "running" else ""),
        "branch": run.branch,
        "commit": finished.commit if finished else None,
        "base_commit": run.base_commit,
        "instruction": run.instruction,
        "model": run.model,
        "usage": meters.as_dict(),
        "diffstat": (finished and finished.diffstat) or {"files": 0, "added": 0, "removed": 0},
        "checks": list(checks.values()),
        "denials": denials,
        "brakes": brakes,
        "shadowed": shadowed,
        "approvals": list(approvals.values()),
        "rework": rework,
        "interrupts": interrupts,
        "held": paused is not None and finished is None and paused.held,  # resume or cancel it
        "model_errors": model_errors,
        "attempts": attempts or 1,
        "events": len(events),
    } | ({"research": research} if research else {}) | ({"factory": factory.as_dict()} if factory.scored else {})


@dataclass
class Factory:
    """A factory run's candidates as its log tells them: the required checks passing at each check
    of each candidate (its curve), whether it passed, the group it behaved with, and the pick."""
    current: int = 0
    candidates: dict[int, dict[str, Any]] = field(default_factory=dict)
    inputs: int = 0
    decided: ev.JudgeDecided | None = None
    scored: bool = False  # a factory run: its candidates were scored

    def checked(self, data: ev.CheckFinished) -> None:
        if data.call_id == "factory-base" or not data.required:
            return
        curve = self.candidates.setdefault(self.current, {"candidate": self.current, "curve": []})["curve"]
        curve.append(int(data.passed))

    def observe(self, data: ev.CandidateScored | ev.JudgeInputs | ev.JudgeDecided) -> None:
        if isinstance(data, ev.CandidateScored):
            self.scored = True
            self.candidates.setdefault(data.candidate, {"candidate": data.candidate, "curve": []}).update(
                passed=data.passed, reason=data.reason)
        elif isinstance(data, ev.JudgeInputs):
            self.inputs = len(data.inputs)
        else:
            self.decided = data

    def as_dict(self) -> dict[str, Any]:
        groups = self.decided.groups if self.decided else []
        listed = []
        for number in sorted(self.candidates):
            candidate = {"passed": False, "reason": "", **self.candidates[number]}
            candidate["group"] = next((i for i, group in enumerate(groups) if number in group), None)
            candidate["chosen"] = self.decided is not None and self.decided.chosen == number
            listed.append(candidate)
        return {"candidates": listed, "judge_inputs": self.inputs, "groups": groups,
                "method": self.decided.method if self.decided else None,
                "reason": self.decided.reason if self.decided else ""}
