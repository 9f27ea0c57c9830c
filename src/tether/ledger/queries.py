"""Derived views of a run, computed from its events (the record), never from agent memory."""

from __future__ import annotations

from typing import Any

from tether.guard.meters import Meters
from tether.ledger.chain import StoredEvent
from tether.ledger.store import RunRow


def pending_approval(events: list[StoredEvent]) -> dict[str, Any] | None:
    """The approval request a run waits on, with its current owners and deadline (escalations
    included), or None."""
    open_requests: dict[str, dict[str, Any]] = {}
    for event in events:
        payload = event.payload
        if event.type == "approval_requested":
            open_requests[payload["call_id"]] = dict(payload, requested_at=event.ts, escalated=False)
        elif event.type == "approval_escalated" and payload["call_id"] in open_requests:
            open_requests[payload["call_id"]].update(owners=payload["owners"], deadline=payload["deadline"],
                                                     escalated=True)
        elif event.type == "approval_decided":
            open_requests.pop(payload["call_id"], None)
    return next(iter(open_requests.values()), None)


HELD = ("stopped", "waiting")
LIFECYCLE = ("run_paused", "run_continued", "run_resumed", "run_finished")


def held_reason(events: list[StoredEvent]) -> dict[str, Any] | None:
    """The run_paused payload of a run held by the kill switch, a fleet limit or a failing model."""
    last = next((e for e in reversed(events) if e.type in LIFECYCLE), None)
    if last is None or last.type != "run_paused" or last.payload.get("rule") == "ownership.protected":
        return None
    return last.payload


def summarize(run: RunRow, events: list[StoredEvent]) -> dict[str, Any]:
    """The stable JSON shape printed by `tether run --json` and `tether show --json`."""
    meters = Meters()
    checks: dict[str, dict[str, Any]] = {}
    denials: list[dict[str, Any]] = []
    brakes: list[dict[str, Any]] = []
    approvals: list[dict[str, Any]] = []
    model_errors = 0
    rework = 0
    interrupts = 0  # approval requests, denials by a person, manual stops
    finished: dict[str, Any] = {}
    paused: dict[str, Any] = {}  # why the run is paused or held now
    step = 0
    for event in events:
        payload = event.payload
        meters.observe(event.type, payload, event.ts)
        if event.type == "model_request":
            step = payload["step"]
        elif event.type == "policy_decision" and payload["verdict"] in ("deny", "stop"):
            denials.append({"step": step, "verdict": payload["verdict"], "rule": payload["rule"],
                            "reason": payload["reason"], "call_id": payload.get("call_id")})
        elif event.type == "brake":
            brakes.append({"step": step, "detector": payload["detector"], "reason": payload["reason"],
                           "evidence": payload["evidence"]})
        elif event.type == "approval_requested":
            interrupts += 1
            approvals.append({"call_id": payload["call_id"], "step": payload["step"], "paths": payload["paths"],
                              "owners": payload["owners"], "action": payload["action"], "decision": "pending",
                              "diff": payload.get("diff", "")})  # requests recorded before diffs had none
        elif event.type == "approval_escalated":
            for approval in approvals:
                if approval["call_id"] == payload["call_id"]:
                    approval.update(owners=payload["owners"], escalated_from=payload["from_owners"])
        elif event.type == "approval_decided":
            if not payload["approved"] and not payload["by"].startswith("tether"):
                interrupts += 1
            for approval in approvals:
                if approval["call_id"] == payload["call_id"]:
                    approval.update(decision="approved" if payload["approved"] else "denied",
                                    by=payload["by"], reason=payload["reason"])
        elif event.type == "check_finished":
            checks[payload["name"]] = {"name": payload["name"], "required": payload["required"],
                                       "passed": payload["passed"], "exit_code": payload["exit_code"],
                                       "output_tail": "" if payload["passed"] else payload.get("output_tail", "")}
        elif event.type == "tool_result" and payload["observation"].startswith("Required checks failed"):
            rework += 1
        elif event.type == "model_error":
            model_errors += 1
        elif event.type == "run_paused":
            paused = payload
            interrupts += payload.get("rule") in ("fleet.kill_switch", "manual")
        elif event.type in ("run_continued", "run_resumed"):
            paused = {}
        elif event.type == "run_finished":
            finished = payload
            interrupts += payload.get("rule") == "manual" and paused.get("rule") != "manual"  # counted at Ctrl-C
    status = finished.get("status", run.status)
    return {
        "run_id": run.id,
        "status": status,
        "reason": finished.get("reason") or paused.get("reason") or ("in progress" if status == "running" else ""),
        "branch": run.branch,
        "commit": finished.get("commit"),
        "base_commit": run.base_commit,
        "instruction": run.instruction,
        "model": run.model,
        "usage": meters.as_dict(),
        "diffstat": finished.get("diffstat", {"files": 0, "added": 0, "removed": 0}),
        "checks": list(checks.values()),
        "denials": denials,
        "brakes": brakes,
        "approvals": approvals,
        "rework": rework,
        "interrupts": interrupts,
        "held": bool(paused) and not finished and status in ("stopped", "waiting"),  # resume or cancel it
        "model_errors": model_errors,
        "events": len(events),
    }
