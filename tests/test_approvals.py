"""Approvals routed to owners: who may approve, timeouts that deny or escalate, and decisions that
continue a run that holds no process."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import CHECK, FIX, call, payloads, person, run_scripted, script
from tether.approvals import decide_approval, expire_approvals, list_pending
from tether.ledger import Ledger
from tether.people import os_user
from tether.policy import parse_policy
from tether.policy.approvers import may_approve
from tether.policy.schema import ApprovalsPolicy
from tether.runner import RunError, RunSpec, continue_run, start_run

POLICY = """
[ownership.protected]
"raindrops.py" = ["@py-team", "carol"]
[approvals]
timeout_s = 60
admins = ["root-admin"]
[approvals.teams]
"@py-team" = ["alice", "bob"]
"""
ESCALATING = POLICY.replace("timeout_s = 60", 'timeout_s = 60\non_timeout = "escalate"\nescalate_to = ["@oncall"]')
TURNS = [call("write_file", path="raindrops.py", content=FIX), call("submit", summary="fixed")]


@pytest.fixture
def paused(ledger: Ledger, repo: Path, tmp_path: Path) -> str:
    summary = run_scripted(ledger, repo, tmp_path, TURNS, POLICY)
    assert summary["status"] == "awaiting_approval"
    return summary["run_id"]


def test_request_names_run_step_action_paths_owners_and_deadline(ledger: Ledger, paused: str):
    (pending,) = list_pending(ledger)
    assert pending.run_id == paused
    request = pending.request
    assert request["step"] == 1 and request["paths"] == ["raindrops.py"]
    assert request["owners"] == ["@py-team", "carol"]
    assert request["action"].startswith("write raindrops.py")
    assert 50 < request["deadline"] - time.time() <= 60
    assert ledger.get_run(paused).owner is None  # no process holds a waiting run


def test_non_owner_cannot_approve_but_may_deny(ledger: Ledger, paused: str):
    with pytest.raises(RunError, match=r"mallory may not approve: owners are @py-team, carol .*recorded on run"):
        decide_approval(ledger, paused, True, person("mallory"), "")
    assert list_pending(ledger)  # still waiting
    (refused,) = [d for d in payloads(ledger, paused, "policy_decision") if d["rule"] == "approvals.not_owner"]
    assert refused["paths"] == ["raindrops.py"] and "mallory" in refused["reason"]
    decide_approval(ledger, paused, False, person("mallory"), "looks risky")
    summary = continue_run(ledger, paused)
    assert summary["approvals"][0]["decision"] == "denied"
    assert summary["interrupts"] == 2  # the request and a person's denial


@pytest.mark.parametrize("who", ["carol", "@carol", "alice", "bob", "root-admin"])
def test_owner_team_member_or_admin_may_approve_and_the_decision_continues_the_run(ledger, paused, who):
    decide_approval(ledger, paused, True, person(who), "ok")
    summary = continue_run(ledger, paused)
    assert summary["status"] == "succeeded"
    assert summary["approvals"][0] == {**summary["approvals"][0], "decision": "approved", "by": who}
    assert summary["interrupts"] == 1


def test_may_approve_rules():
    policy = ApprovalsPolicy(admins=["boss"], teams={"@web": ["Dana"]})
    assert may_approve("dana", ["@web"], policy)
    assert may_approve("boss", ["@anyone"], policy)
    assert not may_approve("eve", ["@web"], policy)


def test_timeout_denies_and_the_run_goes_on(ledger: Ledger, paused: str):
    assert expire_approvals(ledger) == []  # not yet due
    assert expire_approvals(ledger, now=time.time() + 61) == [(paused, "denied at timeout")]
    decided = payloads(ledger, paused, "approval_decided")[0]
    assert decided["by"] == "tether (timeout)" and not decided["approved"]
    summary = continue_run(ledger, paused)
    result = payloads(ledger, paused, "tool_result")[0]
    assert not result["executed"] and "tether (timeout) denied" in result["observation"]
    assert summary["interrupts"] == 1  # a timeout is not a person's denial


def test_unattended_deny_records_the_request_refuses_it_at_once_and_the_run_goes_on(ledger: Ledger, repo: Path,
                                                                                 tmp_path: Path):
    policy = POLICY.replace("[approvals]", '[approvals]\nunattended = "deny"')
    summary = run_scripted(ledger, repo, tmp_path, TURNS, policy + CHECK)
    assert summary["status"] == "failed"  # the write was refused, so the required check still fails
    assert list_pending(ledger) == [] and ledger.get_run(summary["run_id"]).status == "failed"
    (request,) = payloads(ledger, summary["run_id"], "approval_requested")
    assert request["paths"] == ["raindrops.py"] and request["owners"] == ["@py-team", "carol"]
    (decided,) = payloads(ledger, summary["run_id"], "approval_decided")
    assert decided == {**decided, "approved": False, "by": "tether (unattended)"}
    result = payloads(ledger, summary["run_id"], "tool_result")[0]
    assert not result["executed"] and "tether (unattended) denied the write" in result["observation"]
    assert summary["interrupts"] == 1  # the request; the automatic denial is not a person's


def test_timeout_escalates_once_then_denies(ledger: Ledger, repo: Path, tmp_path: Path):
    run_id = run_scripted(ledger, repo, tmp_path, TURNS, ESCALATING)["run_id"]
    later = time.time() + 61
    assert expire_approvals(ledger, now=later) == [(run_id, "escalated to @oncall")]
    (pending,) = list_pending(ledger)
    assert pending.request["owners"] == ["@oncall"] and pending.request["escalated"]
    with pytest.raises(RunError, match="owners are @oncall"):
        decide_approval(ledger, run_id, True, person("carol"), "")  # the original owner had their chance
    assert expire_approvals(ledger, now=later + 30) == []
    assert expire_approvals(ledger, now=later + 61) == [(run_id, "denied at timeout")]


def test_escalated_owner_approves(ledger: Ledger, repo: Path, tmp_path: Path):
    run_id = run_scripted(ledger, repo, tmp_path, TURNS, ESCALATING)["run_id"]
    expire_approvals(ledger, now=time.time() + 61)
    decide_approval(ledger, run_id, True, person("oncall"), "covering for py-team")
    assert continue_run(ledger, run_id)["status"] == "succeeded"


def test_escalation_policy_needs_owners_and_timeout():
    with pytest.raises(ValueError, match="escalate_to"):
        ApprovalsPolicy(on_timeout="escalate", timeout_s=5)
    with pytest.raises(ValueError, match="timeout_s"):
        ApprovalsPolicy(on_timeout="escalate", escalate_to=["@x"])


def test_the_person_who_asked_is_never_the_approver(ledger, repo, tmp_path):
    policy = '[ownership.protected]\n"LICENSE" = ["@me"]\n[approvals]\nadmins = ["' + os_user() + '"]\n'
    turns = [call("write_file", path="LICENSE", content="mine\n"), call("submit", summary="done")]
    inline = run_scripted(ledger, repo, tmp_path, turns, policy, approver=lambda request: (True, os_user(), "ok"))
    assert inline["status"] == "awaiting_approval"  # the inline yes of the requester did not count
    decisions = payloads(ledger, inline["run_id"], "policy_decision")
    assert any(d["rule"] == "approvals.requester" for d in decisions)
    with pytest.raises(RunError, match=r"asked for this run and may not approve its own request"):
        decide_approval(ledger, inline["run_id"], True, person(os_user(), "os_user"), "ok")
    queued = start_run(ledger, RunSpec("task", repo, parse_policy(policy, Path("t.toml")),
                                       model=script(tmp_path / "q.json", turns), requested_by="carol"))
    decide_approval(ledger, queued["run_id"], True, person(os_user(), "os_user"), "reviewed")  # an admin, not the asker
