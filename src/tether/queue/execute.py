"""One attempt at a task inside the worker: take a repository slot, then start, resume or continue
the task's run with the normal runner, and say whether the task is done or must wait."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from tether import lease, runner
from tether.delivery.deliver import deliver, redelivery_due
from tether.delivery.remotes import DeliveryError
from tether.gate.canary import judge, route
from tether.ledger import Ledger
from tether.ledger.chain import StoredEvent
from tether.ledger.fleet import Fleet
from tether.ledger.queries import HELD, held_reason, pending_approval, started_of
from tether.policy import POLICY_FILE, find_policy
from tether.policy.load import org_limits, policy_from_text
from tether.workspace.git import show_file
from tether.workspace.mirror import checkout, is_url

TERMINAL = ("succeeded", "failed", "stopped")


def _wait(status: str, reason: str, retry_at: float | None = None) -> dict[str, Any]:
    return {"status": status, "wait": True, "reason": reason, "retry_at": retry_at}


def _outcome(summary: dict[str, Any], ledger: Ledger, task_id: str) -> dict[str, Any]:
    status = summary["status"]
    if status == "awaiting_approval":
        return _wait(status, "waiting for an approval decision")
    held = held_reason(ledger.events(task_id)) if status in HELD else None
    if held is not None:  # the kill switch or a fleet limit: resume when it lifts
        return _wait(status, held.reason, held.retry_at)
    return {"status": status, "wait": False, "reason": summary.get("reason", ""), "run_id": task_id}


def execute(ledger: Ledger, task: dict[str, Any]) -> dict[str, Any]:
    task_id, repo = task["id"], task["repo"]
    fleet = Fleet(ledger)
    limit = org_limits(fleet.org_policy()).max_concurrent_per_repo
    if not fleet.acquire_slot(repo, task_id, lease.owner_id(), limit, lease.holder_alive):
        return _wait("queued", f"{repo} already runs {limit} task(s), its limit")
    try:
        outcome = _outcome(_drive(ledger, task), ledger, task_id)
        if not outcome["wait"] and ledger.has_run(task_id):
            events = ledger.events(task_id)
            _judge_canary(ledger, events)
            outcome["redeliver_at"] = redelivery_due(events)
        return outcome
    except runner.RunError as exc:
        return _wait(ledger.get_run(task_id).status if ledger.has_run(task_id) else "queued", str(exc))
    except Exception as exc:  # a task that cannot run (bad repo, policy, model) fails with the reason
        return {"status": "failed", "wait": False, "reason": f"{type(exc).__name__}: {exc}", "run_id": None}
    finally:
        fleet.release_slot(task_id)


def _judge_canary(ledger: Ledger, events: list[StoredEvent]) -> None:
    """A finished task of a canary is new evidence: judge the canary now, so a decision takes effect
    from the next task on."""
    started = started_of(events)
    if started is not None and started.canary is not None:
        judge(ledger, started.canary, by=f"worker {lease.owner_id()}")


def _drive(ledger: Ledger, task: dict[str, Any]) -> dict[str, Any]:
    task_id = task["id"]
    if not ledger.has_run(task_id):
        org_text = Fleet(ledger).org_policy()
        if is_url(task["repo"]):  # this machine's mirror of it, fetched now; the policy of the fetched commit
            found = checkout(task["repo"], task.get("branch"))
            repo, base, url, branch = found.path, found.commit, found.url, found.branch
            policy_path = None
            policy = policy_from_text(show_file(repo, base, POLICY_FILE), Path(POLICY_FILE), org_text)
        else:
            repo, base, url, branch = Path(task["repo"]), None, None, None
            policy, policy_path = find_policy(repo, Path(task["policy"]) if task.get("policy") else None, org_text)
        assignment = route(ledger, task["repo"], task_id, org_text) if task.get("source", "queue") == "queue" else None
        if assignment is not None and assignment.policy is not None:
            policy, policy_path = assignment.policy, None  # the candidate's, in place of the repository's
        spec = runner.RunSpec(task["instruction"], repo, policy, policy_path, task.get("model"), base_commit=base,
                              source=task.get("source", "queue"), run_id=task_id,
                              requested_by=task.get("submitted_by"), repo_url=url, base_branch=branch,
                              canary=assignment.canary if assignment else None,
                              arm=assignment.arm if assignment else None)
        return runner.start_run(ledger, spec)
    run = ledger.get_run(task_id)
    if run.status in TERMINAL and held_reason(ledger.events(task_id)) is None:
        return run.summary or {"status": run.status}
    if run.status == "awaiting_approval":
        if pending_approval(ledger.events(task_id)) is not None:
            return {"status": "awaiting_approval"}
        return runner.continue_run(ledger, task_id)
    return runner.resume_run(ledger, task_id)  # crashed, or held and now released


def redeliver(ledger: Ledger, task_id: str) -> float | None:
    """Deliver a finished task's run again (its last delivery failed for a passing reason); when
    to try once more, or None."""
    with contextlib.suppress(DeliveryError):  # recorded on the run as delivery_failed
        deliver(ledger, task_id)
    return redelivery_due(ledger.events(task_id))
