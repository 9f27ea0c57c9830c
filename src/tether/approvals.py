"""Approvals as durable, routed objects: who may decide, what happens when nobody does, and the
list of requests waiting. A paused run holds no process; a decision continues it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tether.ledger import Ledger
from tether.ledger import events as ev
from tether.ledger.queries import pending_approval, requester_of, run_policy
from tether.policy import Policy
from tether.policy.approvers import may_approve
from tether.runner import RunError

TIMEOUT_DECIDER = "tether (timeout)"


@dataclass(frozen=True)
class PendingApproval:
    run_id: str
    request: dict[str, Any]

    @property
    def overdue(self) -> bool:
        deadline = self.request.get("deadline")
        return deadline is not None and time.time() > deadline


def _run_policy(ledger: Ledger, run_id: str) -> Policy:
    policy = run_policy(ledger.events(run_id))
    if policy is None:
        raise RunError(f"run {run_id} was imported; it has no approvals")
    return policy


def decide_approval(ledger: Ledger, run_ref: str, approved: bool, by: str, reason: str) -> str:
    """Record a person's decision on the request a run waits on. Only an owner (or an admin) may
    approve; anyone may deny."""
    run = ledger.get_run(run_ref)
    if run.status != "awaiting_approval":
        raise RunError(f"run {run.id} is {run.status}, not awaiting approval")
    request = pending_approval(ledger.events(run.id))
    if request is None:
        raise RunError(f"run {run.id} has no pending approval request")
    policy = _run_policy(ledger, run.id).approvals
    requester = requester_of(ledger.events(run.id))
    if approved and requester is not None and by == requester:
        raise RunError(f"{by} asked for run {run.id} and may not approve its own request; an owner must")
    if approved and not may_approve(by, request["owners"], policy):
        raise RunError(f"{by} may not approve {', '.join(request['paths'])}: owners are "
                       f"{', '.join(request['owners'])} (or an admin of the policy)")
    decided = ev.ApprovalDecided(call_id=request["call_id"], approved=approved, by=by, reason=reason, by_person=True)
    ledger.record(run.id, decided)
    return run.id


def list_pending(ledger: Ledger, limit: int = 500) -> list[PendingApproval]:
    waiting = []
    for run in ledger.list_runs(limit):
        if run.status == "awaiting_approval":
            request = pending_approval(ledger.events(run.id))
            if request is not None:
                waiting.append(PendingApproval(run.id, request))
    return waiting


def expire_approvals(ledger: Ledger, now: float | None = None) -> list[tuple[str, str]]:
    """Apply each overdue request's timeout rule: deny it, or escalate it once to the fallback
    owners with a fresh deadline (and deny it when that one passes too). Returns (run, what)."""
    now = time.time() if now is None else now
    done = []
    for pending in list_pending(ledger):
        request = pending.request
        if request.get("deadline") is None or now <= request["deadline"]:
            continue
        policy = _run_policy(ledger, pending.run_id).approvals
        if policy.on_timeout == "escalate" and not request["escalated"] and policy.timeout_s:
            escalated = ev.ApprovalEscalated(call_id=request["call_id"], owners=policy.escalate_to,
                                             from_owners=request["owners"], deadline=now + policy.timeout_s)
            ledger.record(pending.run_id, escalated)
            done.append((pending.run_id, f"escalated to {', '.join(policy.escalate_to)}"))
        else:
            decided = ev.ApprovalDecided(call_id=request["call_id"], approved=False, by=TIMEOUT_DECIDER,
                                         reason="no decision before the deadline", by_person=False)
            ledger.record(pending.run_id, decided)
            done.append((pending.run_id, "denied at timeout"))
    return done
