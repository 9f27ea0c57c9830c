"""Canaries: routing a share of queued tasks to a candidate policy, and the sequential test that
promotes it, rolls it back or lets it run out; every decision an event."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.conftest import CHECK, FIX, call, payloads, script
from tests.gate.history import REPO, at_once, history
from tests.queue.helpers import tether
from tether.gate.canary import (
    ArmMeasures,
    Point,
    canaries,
    decide,
    judge,
    route,
    start_canary,
    status,
    stop_canary,
)
from tether.gate.ladder import GateError
from tether.gate.sequential import DifferenceSequence
from tether.ledger import Ledger
from tether.ledger import events as ev
from tether.policy import PolicyError
from tether.queue.execute import execute

CANDIDATE = '[agent]\nsystem_prompt = "Be brief."\n[budget]\nmax_steps = 4\n'


@pytest.fixture
def candidate(tmp_path: Path) -> Path:
    path = tmp_path / "cand.toml"
    path.write_text(CANDIDATE)
    return path


def _start(ledger: Ledger, candidate: Path, **options) -> str:
    settings = {"share": 0.5, "repo": REPO, "by": "alice", "org_text": None, "min_tasks": 40, "max_tasks": 400}
    return start_canary(ledger, candidate, **(settings | options)).id


def _tasks(ledger: Ledger, canary: str, rates: dict[str, float], count: int, seed: int = 3,
           repo: str = REPO) -> None:
    """`count` finished tasks of the canary, each routed at random, fixed with its arm's rate."""
    rng = random.Random(seed)
    for _ in range(count):
        arm = "candidate" if rng.random() < 0.5 else "current"
        result = "fix" if rng.random() < rates[arm] else "fail"
        history(ledger, [result], canary=canary, arms=[arm], repo=repo)


# --- the sequential test -------------------------------------------------------------------


def test_the_confidence_sequence_separates_a_real_difference_and_covers_none():
    rng = random.Random(11)
    better, same = DifferenceSequence(0.2), DifferenceSequence(0.2)
    for _ in range(3000):
        arm = rng.random() < 0.2
        better.add(arm, float(rng.random() < (0.7 if arm else 0.4)))
        same.add(arm, float(rng.random() < 0.4))
    low, high = better.interval()
    assert 0 < low < 0.3 < high  # the true difference, 0.3, inside, and zero excluded
    low, high = same.interval()
    assert low < 0 < high
    assert DifferenceSequence(0.5).interval() is None
    with pytest.raises(ValueError, match="share must be strictly between 0 and 1"):
        DifferenceSequence(1.0)


def test_a_better_candidate_is_promoted_and_then_takes_every_task(ledger, candidate):
    canary = _start(ledger, candidate)
    _tasks(ledger, canary, {"candidate": 0.95, "current": 0.3}, 39)
    assert judge(ledger, canary, by="w").canary.decided is None  # min_tasks not reached
    _tasks(ledger, canary, {"candidate": 0.95, "current": 0.3}, 30, seed=4)
    found = judge(ledger, canary, by="worker 1")
    decided = found.canary.decided
    assert decided is not None and decided.decision == "promote" and decided.by == "worker 1"
    assert decided.evidence["fix_difference"]["lower"] > 0 and decided.tasks == 69
    (event,) = [e for e in ledger.events(canary) if e.type == "canary_decided"]
    assert event.payload["evidence"]["candidate"]["tasks"] == found.candidate.tasks
    assert {route(ledger, REPO, f"t-{n}", None).arm for n in range(50)} == {"candidate"}
    # later tasks are not evidence for a decision already taken
    _tasks(ledger, canary, {"candidate": 0.0, "current": 1.0}, 20, seed=5)
    assert judge(ledger, canary, by="w").canary.decided == decided
    assert status(ledger, canary).candidate.tasks + status(ledger, canary).current.tasks == 69


def test_a_worse_candidate_is_rolled_back_and_routes_nothing(ledger, candidate):
    canary = _start(ledger, candidate)
    _tasks(ledger, canary, {"candidate": 0.2, "current": 0.9}, 80)
    decided = judge(ledger, canary, by="w").canary.decided
    assert decided is not None and decided.decision == "rollback" and "fixes less" in decided.reason
    assert route(ledger, REPO, "t-1", None) is None


def test_a_candidate_that_costs_more_per_task_is_rolled_back_even_when_it_fixes_as_often(ledger, candidate):
    canary = _start(ledger, candidate)
    rng = random.Random(8)
    for _ in range(60):
        arm = "candidate" if rng.random() < 0.5 else "current"
        history(ledger, ["fix" if rng.random() < 0.6 else "fail"], canary=canary, arms=[arm],
                usd=0.5 + rng.random() * 0.1 if arm == "candidate" else 0.1 + rng.random() * 0.02)
    decided = judge(ledger, canary, by="w").canary.decided
    assert decided is not None and decided.decision == "rollback" and "costs more per task" in decided.reason


def test_a_better_candidate_whose_cost_per_fix_is_over_the_tolerance_is_not_promoted(ledger, candidate):
    found = start_canary(ledger, candidate, share=0.5, repo=REPO, by="a", org_text=None, min_tasks=40,
                         max_tasks=100, cost_tolerance=0.2)
    better = Point(80, 0.3, 0.05, 0.55)
    unsure_cost = Point(80, 0.5, -0.1, 1.1)  # dearer per task, but not with confidence
    cheap, dear = ArmMeasures(40, 10, 4.0), ArmMeasures(40, 22, 22.0)  # $0.40 and $1.00 per fix
    assert decide(found.started, 80, better, unsure_cost, dear, cheap) is None
    assert decide(found.started, 100, better, unsure_cost, dear, cheap)[0] == "exhausted"
    assert decide(found.started, 80, better, unsure_cost, ArmMeasures(40, 22, 9.0), cheap)[0] == "promote"


def test_a_canary_without_a_decision_by_max_tasks_ends_and_the_current_stays(ledger, candidate):
    canary = _start(ledger, candidate, max_tasks=50)
    _tasks(ledger, canary, {"candidate": 0.5, "current": 0.5}, 50)
    decided = judge(ledger, canary, by="w").canary.decided
    assert decided is not None and decided.decision == "exhausted"
    assert route(ledger, REPO, "t-1", None) is None


# --- routing -------------------------------------------------------------------------------


def test_routing_takes_the_share_keeps_a_task_in_its_arm_and_stays_in_scope(ledger, candidate):
    canary = _start(ledger, candidate, share=0.2)
    arms = [route(ledger, REPO, f"t-{n}", None) for n in range(1000)]
    to_candidate = sum(a.arm == "candidate" for a in arms)
    assert 160 <= to_candidate <= 240  # 0.2 of 1000, within four standard deviations
    assert all(a.canary == canary for a in arms)
    assert [route(ledger, REPO, f"t-{n}", None).arm for n in range(30)] == [a.arm for a in arms[:30]]
    chosen = next(a for a in arms if a.arm == "candidate")
    assert chosen.policy is not None and chosen.policy.budget.max_steps == 4
    assert all(a.policy is None for a in arms if a.arm == "current")
    assert route(ledger, "/srv/repos/other", "t-1", None) is None
    stop_canary(ledger, canary, by="alice", reason="enough")
    assert route(ledger, REPO, "t-1", None) is None


def test_a_bad_canary_is_refused_before_it_routes_anything(ledger, candidate, tmp_path):
    for share in (0.0, 1.0, -0.2):
        with pytest.raises(GateError, match="--share must be between 0 and 1"):
            _start(ledger, candidate, share=share)
    with pytest.raises(GateError, match="need 2 <= min_tasks <= max_tasks"):
        _start(ledger, candidate, min_tasks=500, max_tasks=100)
    broken = tmp_path / "broken.toml"
    broken.write_text("[budget]\nmax_stepz = 3\n")
    with pytest.raises(PolicyError, match=r"broken.toml: budget.max_stepz: unknown key"):
        _start(ledger, broken)
    with pytest.raises(GateError, match="cannot read the candidate policy"):
        _start(ledger, tmp_path / "missing.toml")
    raising = tmp_path / "raise.toml"
    raising.write_text('[[tiers]]\nname = "all"\ndelivery = "pull_request"\n')
    with pytest.raises(PolicyError, match="permission tiers belong to the org policy"):
        _start(ledger, raising, org_text="")
    assert canaries(ledger) == []
    first = _start(ledger, candidate)
    with pytest.raises(GateError, match=f"canary {first} already routes tasks"):
        _start(ledger, candidate, repo=None)  # every repository overlaps this one
    with pytest.raises(GateError, match="needs a reason"):
        stop_canary(ledger, first, by="alice", reason="")
    stop_canary(ledger, first, by="alice", reason="wrong file")
    with pytest.raises(GateError, match="has already ended"):
        stop_canary(ledger, first, by="alice", reason="again")
    assert _start(ledger, candidate, repo=None) != first


# --- real queued tasks ---------------------------------------------------------------------


def test_queued_tasks_run_in_their_arm_with_its_policy_and_are_judged_as_they_finish(ledger, repo, tmp_path):
    root = str(repo.resolve())
    (repo / "tether.toml").write_text(CHECK)
    cand = tmp_path / "cand.toml"
    cand.write_text(CHECK + "[budget]\nmax_steps = 3\n[agent]\ncheck_after_write = true\n")
    canary = start_canary(ledger, cand, share=0.5, repo=root, by="alice", org_text=None, min_tasks=2, max_tasks=2).id
    ids = [f"t-{n}" for n in range(40)]
    by_arm = {route(ledger, root, task_id, None).arm: task_id for task_id in ids}
    model = script(tmp_path / "turns.json", [call("write_file", path="raindrops.py", content=FIX),
                                             call("submit", summary="done")])
    for arm, task_id in sorted(by_arm.items()):
        outcome = execute(ledger, {"id": task_id, "instruction": "Make the tests pass", "repo": root,
                                   "model": model, "source": "queue", "submitted_by": "bob"})
        assert outcome["status"] == "succeeded", outcome
        (started,) = payloads(ledger, task_id, "run_started")
        assert (started["canary"], started["arm"]) == (canary, arm)
        assert started["policy"]["budget"]["max_steps"] == (3 if arm == "candidate" else None)
        assert started["policy"]["agent"]["check_after_write"] == (arm == "candidate")
    found = status(ledger, canary)
    assert (found.candidate.tasks, found.current.tasks) == (1, 1)
    decided = found.canary.decided
    assert decided is not None and decided.decision == "exhausted" and decided.by.startswith("worker ")


# --- the command line ----------------------------------------------------------------------


def test_canary_on_the_command_line(sqlite_url, repo, candidate, tmp_path):
    store = ["--db", sqlite_url, "--repo", str(repo)]
    none = tether("canary", "status", "--db", sqlite_url)
    assert none.returncode == 2 and "no canary in this store" in none.stderr
    bad = tether("canary", "start", "--candidate", str(candidate), "--share", "1.5", *store)
    assert bad.returncode != 0 and "--share must be between 0 and 1" in bad.stderr
    started = tether("canary", "start", "--candidate", str(candidate), "--share", "0.5", "--min-tasks", "20",
                      "--json", *store)
    assert started.returncode == 0, started.stderr
    canary = json.loads(started.stdout)["canary"]
    ledger = Ledger(sqlite_url)
    _tasks(ledger, canary, {"candidate": 1.0, "current": 0.0}, 30, repo=str(repo.resolve()))
    for event in ledger.events(canary):
        assert isinstance(event.data, ev.CanaryStarted)
    ledger.close()
    report = tmp_path / "canary.html"
    shown = tether("canary", "status", "--html", str(report), *store)
    assert shown.returncode == 0 and "undecided; the evidence now supports promote" in shown.stdout, shown.stdout
    page = report.read_text()
    assert "<svg" in page and "<polygon" in page and canary in page
    as_json = json.loads(tether("canary", "status", canary, "--json", *store).stdout)
    assert as_json["supported"][0] == "promote" and as_json["candidate"]["fixes"] == as_json["candidate"]["tasks"]
    stopped = tether("canary", "stop", canary, "--reason", "done", *store)
    assert stopped.returncode == 0
    assert json.loads(tether("canary", "status", "--json", *store).stdout)["stopped"] is True


def test_workers_judging_at_once_record_one_decision(sqlite_url, candidate):
    ledger = Ledger(sqlite_url)
    canary = _start(ledger, candidate)
    _tasks(ledger, canary, {"candidate": 0.95, "current": 0.3}, 80)
    at_once(sqlite_url, 4, lambda own, n: judge(own, canary, by=f"worker {n}"))
    assert [e.type for e in ledger.events(canary)] == ["canary_started", "canary_decided"]
    ledger.close()
