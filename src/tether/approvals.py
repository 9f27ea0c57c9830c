"""Approvals as durable, routed objects: who may decide, what happens when nobody does, and the
list of requests waiting. A paused run holds no process; a decision continues it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tether.ledger import Ledger
from tether.ledger import events as ev
from tether.ledger.queries import pending_approval, requester_of, run_policy
from tether.ledger.store import ConcurrentAppend
from tether.people import Actor
from tether.policy import Policy
from tether.policy.approvers import is_admin, refusal
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


def decide_approval(ledger: Ledger, run_ref: str, approved: bool, actor: Actor, reason: str,
                    on_behalf_of: str | None = None) -> str:
    """Record an authenticated person's decision on the request a run waits on. Only an owner (or a
    team member, or an admin) may approve, never whoever asked for the run; anyone may deny; a
    viewer decides nothing. `on_behalf_of`: an admin records someone else's decision, as theirs,
    with the admin named. A refusal is recorded on the run (the rule and who tried) and raised."""
    run = ledger.get_run(run_ref)
    if run.status != "awaiting_approval":
        raise RunError(f"run {run.id} is {run.status}, not awaiting approval")
    events = ledger.events(run.id)
    request = pending_approval(events)
    if request is None:
        raise RunError(f"run {run.id} has no pending approval request")
    policy = _run_policy(ledger, run.id).approvals
    by = on_behalf_of.lstrip("@") if on_behalf_of else actor.name
    refused: tuple[str, str] | None = None
    if not actor.may_decide:
        refused = ("approvals.role", f"{actor.describe()} may view runs but not decide on them")
    elif on_behalf_of and not (actor.role == "admin" or is_admin(actor.name, policy)):
        refused = ("approvals.on_behalf", f"{actor.describe()} may not decide on behalf of {by}: only an admin "
                   "records another person's decision")
    else:
        refused = refusal(by, approved, request["owners"], policy, requester_of(events),
                          acting=actor.name if on_behalf_of else None)
    if refused is not None:
        rule, why = refused
        ledger.record(run.id, ev.PolicyDecision(verdict="ask", rule=rule, reason=f"refused: {why}",
                                                paths=request["paths"], owners=request["owners"],
                                                call_id=request["call_id"], step=request["step"]))
        raise RunError(f"{why} (recorded on run {run.id})")
    decided = ev.ApprovalDecided(call_id=request["call_id"], approved=approved, by=by, reason=reason, by_person=True,
                                 via=actor.via, acting=actor.name if on_behalf_of else None)
    try:  # on the log as read: of two people deciding at once, one decision is recorded
        ledger.record(run.id, decided, after=len(events))
    except ConcurrentAppend as exc:
        raise RunError(f"run {run.id} changed while you decided (someone else decided or it was escalated); "
                       "look again") from exc
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
