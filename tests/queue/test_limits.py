"""Fleet limits and the kill switch inside one run (in-process, real git, real SQLite), the org policy
layering, and the task commands that need no worker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import FIX, bash, call, event_types, payloads, person, run_scripted, script
from tests.queue.helpers import start_worker, tether
from tether import lease
from tether.approvals import decide_approval
from tether.ledger import Ledger
from tether.ledger.fleet import ORG_POLICY, Fleet, next_day_at, today
from tether.policy import PolicyError, find_policy
from tether.queue.execute import execute
from tether.queue.tasks import Tasks
from tether.runner import RunError, resume_run

FIX_STEPS = [call("write_file", path="raindrops.py", content=FIX), call("submit")]


def _org(ledger: Ledger, text: str) -> None:
    Fleet(ledger).set_setting(ORG_POLICY, text)


def test_kill_switch_holds_a_run_at_its_step_boundary_and_release_lets_it_resume(ledger: Ledger, repo: Path,
                                                                                  tmp_path: Path):
    Fleet(ledger).set_switch(f"repo:{repo}", "incident 7", "ops")
    summary = run_scripted(ledger, repo, tmp_path, FIX_STEPS)
    run_id = summary["run_id"]
    assert summary["status"] == "stopped" and "incident 7" in summary["reason"]
    assert "model_request" not in event_types(ledger, run_id)  # stopped before the first step
    assert (repo / ".tether" / "worktrees" / run_id).is_dir()  # work kept for the resume
    with pytest.raises(RunError, match="kill switch on repo:"):
        resume_run(ledger, run_id)
    Fleet(ledger).release_switch(f"repo:{repo}", "ops")
    resumed = resume_run(ledger, run_id)
    assert resumed["status"] == "succeeded"
    assert event_types(ledger, run_id).count("run_finished") == 1 and ledger.verify(run_id).ok


def test_a_finished_stopped_run_is_not_resumable(ledger: Ledger, repo: Path, tmp_path: Path):
    summary = run_scripted(ledger, repo, tmp_path, [bash("ls")] * 6, "[brakes]\nrepeat_max = 3\n")  # braked
    assert summary["status"] == "stopped"
    with pytest.raises(RunError, match="finished"):
        resume_run(ledger, summary["run_id"])


@pytest.mark.parametrize("on_limit, status", [("wait", "waiting"), ("refuse", "stopped")])
def test_daily_usd_limit_waits_for_the_next_day_or_refuses(ledger: Ledger, repo: Path, tmp_path: Path,
                                                           on_limit: str, status: str):
    _org(ledger, f'[fleet]\nmax_usd_per_day = 0.1\non_limit = "{on_limit}"\nstep_usd_estimate = 0.05\n')
    turns = [bash(f"echo {n}", cost_usd=0.05) for n in range(5)]
    summary = run_scripted(ledger, repo, tmp_path, turns)
    assert summary["status"] == status and "daily limit of $0.10" in summary["reason"]
    assert summary["usage"]["steps"] == 2  # two steps fit in $0.10; the third was refused
    if on_limit == "wait":
        held = payloads(ledger, summary["run_id"], "run_paused")[-1]
        assert held["rule"] == "fleet.max_usd_per_day" and held["retry_at"] == next_day_at()
    else:
        assert "run_finished" in event_types(ledger, summary["run_id"])


@pytest.mark.parametrize("on_limit, status", [("wait", "waiting"), ("refuse", "stopped")])
def test_lines_per_day_roll_back_the_step_that_would_pass_them(ledger: Ledger, repo: Path, tmp_path: Path,
                                                               on_limit: str, status: str):
    _org(ledger, f'[fleet]\nmax_lines_per_day_per_repo = 4\non_limit = "{on_limit}"\n')
    Fleet(ledger).add_lines(today(), str(repo), 2, None)  # another run used 2 of today's 4
    summary = run_scripted(ledger, repo, tmp_path, FIX_STEPS)
    assert summary["status"] == status and "review capacity of 4" in summary["reason"]
    decision = next(p for p in payloads(ledger, summary["run_id"], "policy_decision") if p.get("rolled_back"))
    assert decision["rule"] == "fleet.max_lines_per_day_per_repo"
    assert next(u.lines for u in Fleet(ledger).usage(today()) if u.scope == f"repo:{repo}") == 2


def test_lines_are_counted_against_the_repository_day(ledger: Ledger, repo: Path, tmp_path: Path):
    _org(ledger, "[fleet]\nmax_lines_per_day_per_repo = 100\n")
    summary = run_scripted(ledger, repo, tmp_path, FIX_STEPS)
    assert summary["status"] == "succeeded"
    counted = next(u.lines for u in Fleet(ledger).usage(today()) if u.scope == f"repo:{repo}")
    assert counted == summary["diffstat"]["added"] + summary["diffstat"]["removed"]


def test_org_policy_is_layered_under_the_repository_policy(repo: Path):
    org = '[commands]\ndeny = ["curl"]\n[budget]\nmax_steps = 7\n[fleet]\nmax_usd_per_day = 5\n'
    (repo / "tether.toml").write_text("[budget]\nmax_steps = 9\n")
    policy, _ = find_policy(repo, None, org)
    assert policy.commands.deny == ["curl"] and policy.budget.max_steps == 9 and policy.fleet.max_usd_per_day == 5
    (repo / "tether.toml").write_text("[fleet]\nmax_usd_per_day = 500\n")
    with pytest.raises(PolicyError, match="fleet limits belong to the org policy"):
        find_policy(repo, None, org)
    with pytest.raises(PolicyError, match=r"<org policy>: budget\.max_steps"):
        find_policy(repo, None, "[budget]\nmax_steps = 0\n")


def test_a_task_waits_while_its_repository_is_at_its_concurrency_limit(ledger: Ledger, repo: Path, tmp_path: Path):
    _org(ledger, "[fleet]\nmax_concurrent_per_repo = 1\n")
    Fleet(ledger).acquire_slot(str(repo), "t-other", lease.owner_id(), 1, lease.holder_alive)  # a live holder
    task = {"id": "t-mine", "repo": str(repo), "instruction": "fix",
            "model": script(tmp_path / "t.json", FIX_STEPS)}
    outcome = execute(ledger, task)
    assert outcome["wait"] and outcome["status"] == "queued" and "its limit" in outcome["reason"]
    assert not ledger.has_run("t-mine")
    Fleet(ledger).release_slot("t-other")
    assert execute(ledger, task)["status"] == "succeeded"
    assert Fleet(ledger).slots(str(repo)) == 0


def test_a_task_that_cannot_start_fails_with_the_reason(ledger: Ledger, repo: Path, tmp_path: Path):
    outcome = execute(ledger, {"id": "t-bad", "repo": str(repo), "instruction": "fix", "model": "nosuch:model"})
    assert outcome["status"] == "failed" and not outcome["wait"] and "nosuch" in outcome["reason"]


def test_cancelled_queued_task_never_runs(sqlite_url: str, repo: Path, tmp_path: Path):
    ledger = Ledger(sqlite_url)
    tasks = Tasks(ledger)
    task_id, created = tasks.submit("fix", repo, key="k", model=script(tmp_path / "t.json", FIX_STEPS))
    assert created and tasks.submit("fix", repo, key="k") == (task_id, False)
    assert tasks.get(task_id[:6]).state == "queued"
    assert tasks.cancel(task_id).state == "cancelled"
    worker = start_worker(sqlite_url, "w", tmp_path / "w.log", idle_exit=1)
    worker.wait(timeout=60)
    assert not ledger.has_run(task_id) and tasks.get(task_id).state == "cancelled"
    result = tether("cancel", task_id, "--db", sqlite_url)
    assert result.returncode == 2 and "already cancelled" in result.stderr
    tasks.close()


def test_fleet_cli_sets_the_org_policy_and_shows_usage(sqlite_url: str, tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[fleet]\nmax_usd_per_day = 'lots'\n")
    result = tether("fleet", "set", str(bad), "--db", sqlite_url)
    assert result.returncode == 2 and "fleet.max_usd_per_day" in result.stderr
    good = tmp_path / "org.toml"
    good.write_text("[fleet]\nmax_usd_per_day = 3.5\n")
    assert tether("fleet", "set", str(good), "--db", sqlite_url).returncode == 0
    assert tether("brake", "--task", "t-1", "--reason", "why", "--db", sqlite_url).returncode == 0
    shown = json.loads(tether("fleet", "show", "--json", "--db", sqlite_url).stdout)
    assert shown["limits"]["max_usd_per_day"] == 3.5 and shown["switches"][0]["scope"] == "task:t-1"
    assert tether("brake", "--all", "--task", "x", "--db", sqlite_url).returncode == 2  # one scope only
    assert tether("release", "--all", "--db", sqlite_url).returncode == 2  # nothing to release


def test_a_task_waits_for_an_approval_and_its_worker_continues_the_run(ledger: Ledger, repo: Path, tmp_path: Path):
    (repo / "tether.toml").write_text('[ownership]\nprotected = { "raindrops.py" = ["alice"] }\n')
    task = {"id": "t-owned", "repo": str(repo), "instruction": "fix",
            "model": script(tmp_path / "t.json", FIX_STEPS)}
    first = execute(ledger, task)
    assert first["wait"] and first["status"] == "awaiting_approval"
    assert execute(ledger, task)["status"] == "awaiting_approval"  # still undecided: nothing moves
    decide_approval(ledger, "t-owned", True, person("alice"), "fine")
    assert execute(ledger, task)["status"] == "succeeded"
