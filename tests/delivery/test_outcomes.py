"""Outcomes without a person typing them: delivered runs' pull requests asked on a forge server
speaking GitHub's, GitLab's and Gitea's documented shapes (the single request, its reviews), joined
with the repository's history, recorded as the runs' outcomes, and every refresh in its log."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.conftest import FIX, call, git, payloads
from tests.delivery.conftest import TOKEN_ENV, fixed
from tests.delivery.servers import TOKEN
from tether.gate.outcomes import report_outcome
from tether.history.refresh import refresh, refresh_due, refresh_log_id

BY = "tether test"


def _three_requests(ledger, world, tmp_path) -> list[str]:
    """Three runs, each delivered as its own pull request (1, 2 and 3)."""
    runs = []
    for name in ("A.md", "B.md", "C.md"):
        summary = fixed(ledger, world, tmp_path, world.policy(), [
            call("write_file", path="raindrops.py", content=FIX), call("write_file", path=name, content="x\n"),
            call("submit", summary="done")])
        runs.append(summary["run_id"])
    assert [p.number for p in world.forge.pulls["acme/shop"]] == [1, 2, 3]
    return runs


def _outcomes(ledger, run_id: str) -> list[tuple[str, str]]:
    return [(p["outcome"], p["by"]) for p in payloads(ledger, run_id, "outcome_reported")]


def test_merged_closed_and_changes_requested_come_from_the_forge(ledger, world, tmp_path):
    merged, closed, reviewed = _three_requests(ledger, world, tmp_path)
    first, second, third = world.forge.pulls["acme/shop"]
    first.merge()  # merged on the forge; the user's checkout has not fetched it
    second.state = "closed"
    third.reviews = [("alice", "COMMENTED"), ("bob", "CHANGES_REQUESTED"), ("alice", "APPROVED")]
    done = refresh(ledger, world.repo, 30, by=BY)
    by_run = {r.run_id: r for r in done.runs}
    assert (by_run[merged].outcome, by_run[merged].forge_state, by_run[merged].recorded) == ("merged", "merged", True)
    assert (by_run[closed].outcome, by_run[closed].forge_state) == ("rejected", "closed")
    assert by_run[reviewed].outcome is None and by_run[reviewed].forge_state == "open"
    assert by_run[reviewed].changes_requested == ["bob"]  # alice only commented, then approved
    assert _outcomes(ledger, merged) == [("merged", BY)] and _outcomes(ledger, closed) == [("rejected", BY)]
    assert _outcomes(ledger, reviewed) == []
    # bob approves, the request is merged: the next refresh records it; nothing else changes
    third.reviews.append(("bob", "APPROVED"))
    third.merge()
    again = {r.run_id: r for r in refresh(ledger, world.repo, 30, by=BY).runs}
    assert again[reviewed].changes_requested == [] and again[reviewed].outcome == "merged"
    assert [again[r].recorded for r in (merged, closed, reviewed)] == [False, False, True]
    log = refresh_log_id(str(world.repo))
    assert [e.type for e in ledger.events(log)] == ["outcomes_refreshed", "outcomes_refreshed"]
    assert ledger.verify(log).ok and all(ledger.verify(r).ok for r in (merged, closed, reviewed))
    assert ledger.list_runs(repo=str(world.repo)) and log not in {r.id for r in ledger.list_runs(limit=None)}


def test_a_request_with_changes_requested_on_merge_says_so(ledger, world, tmp_path):
    summary = fixed(ledger, world, tmp_path, world.policy())
    (pull,) = world.forge.pulls["acme/shop"]
    pull.reviews = [("bob", "CHANGES_REQUESTED")]
    pull.merge()
    (found,) = refresh(ledger, world.repo, 30, by=BY).runs
    assert found.outcome == "merged" and "changes requested by bob" in found.reason
    assert found.run_id == summary["run_id"]


def test_the_history_is_graver_than_the_forge(ledger, world, tmp_path):
    """Merged on the forge and in the checkout, then reverted on the default branch: reverted."""
    summary = fixed(ledger, world, tmp_path, world.policy())
    world.forge.pulls["acme/shop"][0].merge()
    who = ["-c", "user.email=m@example.com", "-c", "user.name=M"]
    git(world.repo, *who, "merge", "-q", "--no-ff", "-m", "merge", summary["branch"])
    (found,) = refresh(ledger, world.repo, 30, by=BY).runs
    assert found.outcome == "merged" and found.reason.startswith("merged as")
    git(world.repo, *who, "revert", "--no-edit", "-m", "1", "HEAD")
    (found,) = refresh(ledger, world.repo, 30, by=BY).runs
    assert (found.outcome, found.recorded, found.forge_state) == ("reverted", True, "merged")
    assert _outcomes(ledger, summary["run_id"]) == [("merged", BY), ("reverted", BY)]


def test_a_persons_report_stands_unless_the_evidence_is_graver(ledger, world, tmp_path):
    summary = fixed(ledger, world, tmp_path, world.policy())
    report_outcome(ledger, summary["run_id"], "defect", by="carol", reason="broke checkout")
    world.forge.pulls["acme/shop"][0].merge()
    (found,) = refresh(ledger, world.repo, 30, by=BY).runs
    assert found.outcome == "merged" and not found.recorded  # carol's defect is graver than a merge
    assert _outcomes(ledger, summary["run_id"]) == [("defect", "carol")]
    report_outcome(ledger, summary["run_id"], "merged", by="carol")
    world.forge.pulls["acme/shop"][0].state = "closed"
    world.forge.pulls["acme/shop"][0].merged_at = None
    (found,) = refresh(ledger, world.repo, 30, by=BY).runs
    assert found.recorded and _outcomes(ledger, summary["run_id"])[-1] == ("rejected", BY)


def test_a_forge_that_fails_leaves_the_outcome_as_it_was_and_the_refresh_says_why(ledger, world, tmp_path,
                                                                                  monkeypatch):
    summary = fixed(ledger, world, tmp_path, world.policy())
    world.forge.fail_next = [(502, {"message": "Bad Gateway"}, {})]
    (found,) = refresh(ledger, world.repo, 30, by=BY).runs
    assert found.outcome is None and found.error.startswith("server:") and "502" in found.error
    monkeypatch.setenv(TOKEN_ENV, "wrong-token")
    (found,) = refresh(ledger, world.repo, 30, by=BY).runs
    assert found.error.startswith("auth:") and "wrong-token" not in found.error
    monkeypatch.delenv(TOKEN_ENV)
    (found,) = refresh(ledger, world.repo, 30, by=BY).runs
    assert found.error.startswith("config:") and TOKEN_ENV in found.error
    world.forge.pulls["acme/shop"][0].number = 99  # the request is gone from the forge
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    (found,) = refresh(ledger, world.repo, 30, by=BY).runs
    assert found.error.startswith("not_found:")
    assert _outcomes(ledger, summary["run_id"]) == []
    log = refresh_log_id(str(world.repo))
    assert len(ledger.events(log)) == 4
    assert all(TOKEN not in e.payload_json for e in ledger.events(log))


def test_reviews_are_read_past_the_first_page(ledger, world, tmp_path):
    fixed(ledger, world, tmp_path, world.policy())
    (pull,) = world.forge.pulls["acme/shop"]
    pull.reviews = [("alice", "COMMENTED")] * 130 + [("bob", "CHANGES_REQUESTED")]
    (found,) = refresh(ledger, world.repo, 30, by=BY).runs
    assert found.changes_requested == ["bob"]


def test_the_schedule_refreshes_each_repository_once_per_interval(ledger, world, tmp_path):
    summary = fixed(ledger, world, tmp_path, world.policy())
    world.forge.pulls["acme/shop"][0].merge()
    now = time.time()
    first = refresh_due(ledger, 3600, by=BY, now=now)
    assert list(first) == [str(world.repo)] and first[str(world.repo)].runs[0].outcome == "merged"
    assert refresh_due(ledger, 3600, by=BY, now=now + 60) == {}
    later = refresh_due(ledger, 3600, by=BY, now=now + 3601)
    assert not later[str(world.repo)].runs[0].recorded  # looked again, nothing new
    assert _outcomes(ledger, summary["run_id"]) == [("merged", BY)]


def test_a_worker_refreshes_outcomes_on_its_schedule(world, tmp_path, sqlite_url):
    from tether.ledger import Ledger

    ledger = Ledger(sqlite_url)
    summary = fixed(ledger, world, tmp_path, world.policy())
    world.forge.pulls["acme/shop"][0].state = "closed"
    worker = subprocess.run([sys.executable, "-m", "tether", "worker", "--refresh-outcomes", "1h", "--idle-exit", "3",
                             "--id", "refresher", "--db", sqlite_url, "--repo", str(world.repo)],
                            capture_output=True, text=True, timeout=180, env={**os.environ})
    assert worker.returncode == 0, worker.stderr
    assert "refreshed" in worker.stderr and "1 outcome(s) recorded" in worker.stderr
    assert _outcomes(ledger, summary["run_id"]) == [("rejected", "tether worker refresher")]
    ledger.close()
