"""The queue's promises, shown with real processes on real SQLite and PostgreSQL: idempotent
submission under concurrency, exactly-once execution by 4 workers, recovery of a SIGKILLed worker,
a daily USD limit shared by concurrent workers, and the kill switch."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import bash, script
from tests.queue.helpers import start_worker, statuses, stop, submit_json, tether, wait_until
from tether.ledger import Ledger
from tether.ledger.fleet import Fleet, today
from tether.queue.tasks import Tasks

SUBMITTER = Path(__file__).with_name("submitter.py")


def _submit_concurrently(db_url: str, repo: Path, model: str) -> tuple[list[dict[str, str]], list[str], list[str]]:
    unique = [f"u{i}" for i in range(600)]
    repeated = [f"r{i}" for i in range(200)]
    submissions = unique + repeated + repeated  # 1000 submissions, 800 distinct keys
    random.Random(7).shuffle(submissions)
    chunks = [submissions[i::8] for i in range(8)]
    processes = [subprocess.Popen([sys.executable, str(SUBMITTER), db_url, str(repo), model, json.dumps(chunk)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for chunk in chunks]
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
        results.append(json.loads(stdout))
    return results, unique, repeated


def test_1000_submissions_from_8_processes_give_800_tasks_run_exactly_once_by_4_workers(
        db_url: str, repo: Path, tmp_path: Path):
    model = script(tmp_path / "noop.json", [{"tool_calls": [{"name": "submit"}]}])
    results, unique, repeated = _submit_concurrently(db_url, repo, model)
    by_key: dict[str, set[str]] = {}
    for result in results:
        for key, task_id in result.items():
            by_key.setdefault(key, set()).add(task_id)
    assert all(len(ids) == 1 for ids in by_key.values())  # a key always names one task
    assert set(by_key) == set(unique) | set(repeated) and len(by_key) == 800
    racing = sum(1 for key in repeated if sum(key in result for result in results) == 2)
    assert racing > 100  # most repeated keys were submitted by two different processes
    ledger = Ledger(db_url)
    tasks = Tasks(ledger)
    assert len(tasks.client.list_workflows(name="tether.task")) == 800

    workers = [start_worker(db_url, f"w{i}", tmp_path / f"w{i}.log", idle_exit=3) for i in range(4)]
    try:
        for worker in workers:
            worker.wait(timeout=900)
    finally:
        stop(workers)
    runs = statuses(ledger)
    assert len(runs) == 800 and set(runs.values()) == {"succeeded"}
    for run_id in runs:
        types = [event.type for event in ledger.events(run_id)]
        assert types.count("run_started") == 1 and types.count("run_finished") == 1
        assert "run_resumed" not in types
    workflows = tasks.client.list_workflows(name="tether.task", load_input=False)
    assert {w.status for w in workflows} == {"SUCCESS"}
    assert len({w.executor_id for w in workflows}) == 4  # all four workers took work
    tasks.close()


def _slow_turns(steps: int, cost: float = 0.0) -> list[dict]:
    steps_ = [bash(f"sleep 0.3 && echo {n}", cost_usd=cost) for n in range(steps)]
    return [*steps_, {"tool_calls": [{"name": "submit"}]}]


def _killed_mid_run(db_url: str, repo: Path, tmp_path: Path, worker_id: str, steps: int,
                    events: int) -> tuple[Ledger, str]:
    """Submit a slow task, let worker_id get `events` events into its run, then SIGKILL the worker."""
    model = script(tmp_path / "slow.json", _slow_turns(steps))
    task_id = submit_json(db_url, repo, "slow task", model)["task_id"]
    ledger = Ledger(db_url)
    doomed = start_worker(db_url, worker_id, tmp_path / "w.log")
    wait_until(lambda: ledger.has_run(task_id) and len(ledger.events(task_id)) >= events, 60,
               "the run to get going")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    return ledger, task_id


def _drain(db_url: str, worker_id: str, log: Path) -> None:
    """Run one worker until the queue has been empty for 2 s."""
    worker = start_worker(db_url, worker_id, log, idle_exit=2)
    try:
        worker.wait(timeout=120)
    finally:
        stop([worker])


def test_a_sigkilled_worker_has_its_task_recovered_and_completed_once(db_url: str, repo: Path, tmp_path: Path):
    ledger, task_id = _killed_mid_run(db_url, repo, tmp_path, "doomed", steps=8, events=12)
    assert ledger.get_run(task_id).status == "running"  # left behind by the dead worker
    recovered = tether("recover", "--executor", "doomed", "--db", db_url)
    assert recovered.returncode == 0 and task_id in recovered.stdout
    _drain(db_url, "rescuer", tmp_path / "r.log")
    run = ledger.get_run(task_id)
    types = [event.type for event in ledger.events(task_id)]
    assert run.status == "succeeded", (tmp_path / "r.log").read_text()
    assert types.count("run_started") == 1 and types.count("run_resumed") == 1 and types.count("run_finished") == 1
    calls = [e.payload["call_id"] for e in ledger.events(task_id) if e.type == "tool_result"]
    assert len(calls) == len(set(calls)) == 9  # every step's result recorded once
    assert ledger.verify(task_id).ok
    tasks = Tasks(ledger)
    task = tasks.get(task_id)
    assert (task.state, task.attempts, task.executor) == ("succeeded", 2, "rescuer")
    tasks.close()


def test_a_restarted_worker_recovers_its_own_task(db_url: str, repo: Path, tmp_path: Path):
    ledger, task_id = _killed_mid_run(db_url, repo, tmp_path, "phoenix", steps=6, events=8)
    _drain(db_url, "phoenix", tmp_path / "w.log")
    assert ledger.get_run(task_id).status == "succeeded", (tmp_path / "w.log").read_text()
    assert [e.type for e in ledger.events(task_id)].count("run_resumed") == 1


def test_a_daily_usd_limit_holds_across_4_concurrent_workers(db_url: str, repo: Path, tmp_path: Path):
    step_cost, limit = 0.05, 1.0
    org = tmp_path / "org.toml"
    org.write_text(f'[fleet]\nmax_usd_per_day = {limit}\non_limit = "refuse"\nstep_usd_estimate = {step_cost}\n'
                   '[sandbox]\nmode = "none"\n')
    assert tether("fleet", "set", str(org), "--db", db_url).returncode == 0
    model = script(tmp_path / "paid.json", [bash(f"echo {n}", cost_usd=step_cost) for n in range(10)]
                   + [{"tool_calls": [{"name": "submit"}], "cost_usd": step_cost}])
    for n in range(12):  # 12 tasks x 11 steps x $0.05 = $6.60 wanted, $1 allowed
        submit_json(db_url, repo, f"paid {n}", model)
    workers = [start_worker(db_url, f"p{i}", tmp_path / f"p{i}.log", idle_exit=3) for i in range(4)]
    try:
        for worker in workers:
            worker.wait(timeout=300)
    finally:
        stop(workers)
    ledger = Ledger(db_url)
    spent = sum(e.payload["cost_usd"] for run_id in statuses(ledger) for e in ledger.events(run_id)
                if e.type == "model_response")
    assert limit <= spent <= limit + step_cost + 1e-9
    org_row = next(u for u in Fleet(ledger).usage(today()) if u.scope == "org")
    assert org_row.usd == pytest.approx(spent)  # every reservation was settled to the real cost
    stopped = [run_id for run_id, status in statuses(ledger).items() if status == "stopped"]
    assert stopped and all("daily limit" in (ledger.get_run(r).summary or {}).get("reason", "") for r in stopped)


def test_the_kill_switch_stops_every_worker_within_one_step_and_release_resumes(
        db_url: str, repo: Path, tmp_path: Path):
    model = script(tmp_path / "long.json", _slow_turns(20))
    task_ids = [submit_json(db_url, repo, f"long {n}", model)["task_id"] for n in range(4)]
    ledger = Ledger(db_url)
    workers = [start_worker(db_url, f"k{i}", tmp_path / f"k{i}.log") for i in range(4)]
    try:
        wait_until(lambda: all(ledger.has_run(t) and len(ledger.events(t)) >= 6 for t in task_ids), 120,
                   "all four runs to be under way")
        braked = tether("brake", "--all", "--reason", "incident 42", "--db", db_url)
        assert braked.returncode == 0, braked.stderr
        switched_at = time.time()
        wait_until(lambda: all(ledger.get_run(t).status == "stopped" for t in task_ids), 30, "every run to stop")
        for task_id in task_ids:
            late = [e for e in ledger.events(task_id) if e.type == "model_request" and e.ts > switched_at]
            assert len(late) <= 1  # only a step that had already passed its check
            assert "incident 42" in ledger.get_run(task_id).summary["reason"]
        time.sleep(1.5)  # held runs stay held while the switch is on
        assert all(ledger.get_run(t).status == "stopped" for t in task_ids)
        assert tether("release", "--all", "--db", db_url).returncode == 0
        wait_until(lambda: all(ledger.get_run(t).status == "succeeded" for t in task_ids), 240,
                   "every run to resume and finish")
    finally:
        stop(workers)
    for task_id in task_ids:
        types = [e.type for e in ledger.events(task_id)]
        assert types.count("run_paused") == 1 and types.count("run_resumed") == 1 and types.count("run_finished") == 1


def test_submit_refuses_a_bad_repository_or_policy(db_url: str, tmp_path: Path, repo: Path):
    result = tether("submit", "x", "--repo", str(tmp_path), "--db", db_url)
    assert result.returncode == 2 and "not inside a git repository" in result.stderr
    (repo / "tether.toml").write_text("[budget]\nmax_usd = -1\n")
    result = tether("submit", "x", "--repo", str(repo), "--db", db_url)
    assert result.returncode == 2 and "budget.max_usd" in result.stderr
    assert tether("task", "t-nope", "--db", db_url).returncode == 2
