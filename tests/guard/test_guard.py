"""The guard decides on its own: no worktree, no sandbox, no database, no model. A plain folder
stands for the files the agent acts on, and meters for what the run has spent."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import parse_policy_text
from tether.guard.guard import Guard
from tether.ledger.meters import Meters
from tether.models import ToolCall
from tether.policy.ownership import Ownership
from tether.workspace.worktree import DiffStat, FileChange

POLICY = """
[budget]
max_steps = 3
max_tool_calls = 4
[commands]
deny = ["curl"]
[writes]
deny = ["secrets/**"]
max_files = 2
max_lines = 20
[ownership.protected]
"src/signer.py" = ["@alice"]
[approvals]
admins = ["root-admin"]
"""


@pytest.fixture
def guard(tmp_path: Path) -> Guard:
    policy = parse_policy_text(POLICY)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "long.py").write_text("".join(f"line_{n} = {n}\n" for n in range(40)))
    return Guard(policy=policy, ownership=Ownership.build(policy.ownership, None), root=tmp_path)


def call(name: str, **arguments: str) -> ToolCall:
    return ToolCall("c1", name, arguments)


def test_budgets_stop_before_the_model_and_before_the_tool(guard: Guard):
    assert guard.before_model(Meters(steps=2), 100, 0.0, None).verdict == "allow"
    stop = guard.before_model(Meters(steps=3), 100, 0.0, None)
    assert (stop.verdict, stop.rule) == ("stop", "budget.max_steps")
    assert guard.before_tool(call("bash", command="ls"), Meters(tool_calls=4), None).verdict == "allow"
    assert guard.before_tool(call("bash", command="ls"), Meters(tool_calls=5), None).rule == "budget.max_tool_calls"


@pytest.mark.parametrize("tool_call, verdict, rule", [
    (call("bash", command="curl https://example.com"), "deny", "commands.deny"),
    (call("bash", command="ls\0rm"), "deny", "commands.invalid"),
    (call("fly", to="moon"), "deny", "tools.unknown"),
    (call("write_file", path="a.py"), "deny", "tools.arguments"),
    (call("read_file", path="../outside"), "deny", "paths.outside"),
    (call("write_file", path="secrets/key.pem", content="x"), "deny", "writes.deny"),
    (call("write_file", path="src/signer.py", content="x"), "ask", "ownership.protected"),
    (call("write_file", path="src/long.py", content="line_0 = 0\n"), "deny", "writes.max_removed_share"),
    (call("edit_file", path="src/long.py", old="line_1 = 1", new="line_1 = 2"), "allow", ""),
    (call("write_file", path="src/new.py", content="x = 1\n"), "allow", ""),
])
def test_each_call_is_decided_without_executing_it(guard: Guard, tool_call: ToolCall, verdict: str, rule: str):
    decision = guard.before_tool(tool_call, Meters(), None)
    assert (decision.verdict, decision.rule) == (verdict, rule), decision.reason
    assert not (guard.root / "src" / "new.py").exists()


def test_only_an_owner_or_an_admin_may_approve_and_anyone_may_deny(guard: Guard):
    ask = guard.before_tool(call("write_file", path="src/signer.py", content="x"), Meters(), None)
    assert guard.may_decide(ask, True, "mallory").rule == "approvals.not_owner"
    assert guard.may_decide(ask, True, "root-admin") is None
    assert guard.may_decide(ask, False, "mallory") is None
    assert guard.decide(ask, (True, "alice", "")).verdict == "allow"
    denied = guard.decide(ask, (False, "bob", "not now"))
    assert (denied.verdict, denied.rule) == ("deny", "ownership.denied") and "not now" in denied.reason


def test_an_approver_sees_the_diff_of_the_write(guard: Guard):
    diff = guard.proposed_diff(call("edit_file", path="src/long.py", old="line_1 = 1", new="line_1 = 2"))
    assert "-line_1 = 1" in diff and "+line_1 = 2" in diff


def test_after_the_step_write_rules_and_caps_refuse_what_it_changed(guard: Guard):
    bash = call("bash", command="make")
    assert guard.after_tool(bash, ["secrets/key.pem"]).rule == "writes.deny"
    assert guard.after_tool(bash, ["src/signer.py"]).rule == "ownership.protected"  # a command does not ask
    assert guard.after_tool(bash, [], ["secrets/cache.bin"]).rule == "writes.deny"  # an ignored file too
    assert guard.after_tool(bash, ["a.py"], write_limited=True).rule == "sandbox.max_step_write_mb"
    three = DiffStat([FileChange("a.py", 1, 0), FileChange("b.py", 1, 0), FileChange("c.py", 1, 0)])
    assert guard.after_tool(bash, ["c.py"], total=three).rule == "writes.max_files"
    long = DiffStat([FileChange("a.py", 30, 0)])
    assert guard.after_tool(bash, ["a.py"], total=long).rule == "writes.max_lines"
    assert guard.after_tool(bash, ["a.py"], total=DiffStat([FileChange("a.py", 3, 1)])) is None
    assert guard.needs_total


def test_ignored_files_matter_only_where_a_rule_or_an_owner_cares(guard: Guard):
    assert guard.watches_ignored
    assert guard.watched_ignored(["secrets/x", "build/out.o", "src/signer.py"]) == ["secrets/x", "src/signer.py"]
    plain = Guard(policy=parse_policy_text(""), ownership=Ownership.build(parse_policy_text("").ownership, None),
                  root=guard.root)
    assert not plain.watches_ignored and not plain.needs_total


def test_a_money_budget_is_never_passed_and_its_amounts_are_readable():
    from tether.guard.budgets import check_model_call
    from tether.policy.schema import BudgetPolicy

    meters = Meters(usd=0.0006)
    budget = BudgetPolicy(max_usd=0.001)
    stop = check_model_call(meters, budget, 100, 0.0001, None, reply_usd=0.0005)  # could end at $0.0012
    assert stop is not None and stop.rule == "budget.max_usd"
    assert "$0.0006 spent" in stop.reason and "up to $0.0006" in stop.reason and "budget of $0.001" in stop.reason
    assert check_model_call(meters, budget, 100, 0.0001, None, reply_usd=0.0002) is None  # ends at $0.0009 at most
    assert "budget of $2.00" in check_model_call(Meters(usd=2.5), BudgetPolicy(max_usd=2), 1, 0, None).reason
