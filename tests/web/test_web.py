"""`tether serve` over real HTTP on loopback, with real runs in a real store: sign-in and sessions,
CSRF, who may decide, races between approvers, bad input, and the JSON API."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import FIX, git, script, token_for
from tests.web.server import TETHER, csrf_of, signed_in, web_server
from tether.ledger import Ledger
from tether.ledger import events as ev
from tether.ledger.fleet import Fleet

POLICY = """
[ownership.protected]
"raindrops.py" = ["@qa"]
[approvals]
teams = { "@qa" = ["alice", "carol"] }
[[checks]]
name = "tests"
command = "python -m pytest -q -p no:cacheprovider raindrops_test.py"
"""
TURNS = [{"tool_calls": [{"name": "bash", "arguments": {"command": "echo looking; echo AKIAIOSFODNN7EXAMPLE"}}]},
         {"tool_calls": [{"name": "write_file", "arguments": {"path": "raindrops.py", "content": FIX}}]},
         {"tool_calls": [{"name": "submit", "arguments": {}}]}]


def paused_run(repo: Path, tmp_path: Path, db: str, name: str = "turns") -> str:
    (repo / "tether.toml").write_text(POLICY)
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=d@e", "-c", "user.name=d", "commit", "-qm", "policy", "--allow-empty")
    model = script(tmp_path / f"{name}.json", TURNS)
    done = subprocess.run([*TETHER, "run", "Make the tests pass", "--model", model, "--db", db, "--json"], cwd=repo,
                          capture_output=True, text=True, timeout=120)
    summary = json.loads(done.stdout)
    assert summary["status"] == "awaiting_approval", done.stderr
    return summary["run_id"]


def decided(ledger: Ledger, run_id: str) -> list[ev.ApprovalDecided]:
    return [e.data for e in ledger.events(run_id) if isinstance(e.data, ev.ApprovalDecided)]


def wait_status(ledger: Ledger, run_id: str, status: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while ledger.get_run(run_id).status != status:
        assert time.time() < deadline, f"run {run_id} is {ledger.get_run(run_id).status}, not {status}"
        time.sleep(0.2)


@pytest.fixture
def store(repo: Path, tmp_path: Path, sqlite_url: str):
    run_id = paused_run(repo, tmp_path, sqlite_url)
    tokens = {name: token_for(repo, name, role, sqlite_url) for name, role in
              (("alice", "approver"), ("carol", "approver"), ("bob", "approver"), ("vic", "viewer"),
               ("ada", "admin"))}
    ledger = Ledger(sqlite_url)
    yield ledger, run_id, tokens
    ledger.close()


def test_pages_need_a_session_and_a_session_ends_with_its_token(store, repo: Path, sqlite_url: str):
    ledger, run_id, tokens = store
    with web_server(sqlite_url, repo) as url:
        anonymous = httpx.get(f"{url}/runs/{run_id}")
        assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/signin")
        assert httpx.get(f"{url}/api/runs").status_code == 401
        assert httpx.get(f"{url}/api/runs", headers={"Authorization": "Bearer tt_nope"}).status_code == 401
        bad = httpx.post(f"{url}/signin", data={"token": "tt_forged", "next": "/runs"})
        assert bad.status_code == 401 and "not known" in bad.text
        forged = httpx.get(f"{url}/runs", cookies={"tether_session": "ada-id.9999999999.00.deadbeef"})
        assert forged.status_code == 303
        client = signed_in(url, tokens["carol"])
        assert client.get("/runs").status_code == 200
        revoked = subprocess.run([*TETHER, "token", "revoke", _token_id(ledger, "carol"), "--db", sqlite_url],
                                 cwd=repo, capture_output=True, text=True)
        assert revoked.returncode == 0, revoked.stderr
        assert client.get("/runs").status_code == 303  # the session ended with its token
        # A TTL long enough to sign in on a loaded machine; then wait for the expiry the store holds.
        expiring = subprocess.run([*TETHER, "token", "create", "--name", "eve", "--role", "approver", "--ttl",
                                   "8s", "--json", "--db", sqlite_url], cwd=repo, capture_output=True, text=True)
        created = json.loads(expiring.stdout)
        eve = signed_in(url, created["token"])
        assert eve.get("/runs").status_code == 200
        time.sleep(max(0.0, created["expires_at"] - time.time()) + 0.5)
        assert eve.get("/runs").status_code == 303
        open_redirect = httpx.post(f"{url}/signin", data={"token": tokens["alice"], "next": "//evil.example/x"})
        assert open_redirect.headers["location"] == "/runs"


def _token_id(ledger: Ledger, name: str) -> str:
    from tether.ledger import tokens

    return next(holder.id for holder in tokens.listed(ledger) if holder.name == name)


def test_a_form_without_its_sessions_csrf_token_changes_nothing(store, repo: Path, sqlite_url: str):
    ledger, run_id, tokens = store
    with web_server(sqlite_url, repo) as url:
        alice, bob = signed_in(url, tokens["alice"]), signed_in(url, tokens["bob"])
        bobs = csrf_of(bob.get(f"/runs/{run_id}").text)
        for csrf in ("", "0" * 32, bobs):  # none, forged, another session's
            answer = alice.post(f"/runs/{run_id}/decide", data={"decision": "approve", "csrf": csrf})
            assert answer.status_code == 403
            assert alice.post("/fleet/switches", data={"scope": "all", "reason": "x", "csrf": csrf}).status_code == 403
        api = alice.post(f"/api/runs/{run_id}/approve", json={"reason": "x"})  # a cookie and no CSRF header
        assert api.status_code == 403
    assert decided(ledger, run_id) == [] and Fleet(ledger).switches() == []
    assert ledger.get_run(run_id).status == "awaiting_approval"


def test_only_an_owner_approves_and_a_viewer_decides_nothing(store, repo: Path, sqlite_url: str):
    ledger, run_id, tokens = store
    with web_server(sqlite_url, repo) as url:
        bob = signed_in(url, tokens["bob"])
        assert run_id not in bob.get("/approvals").text  # not his to answer
        refused = bob.post(f"/runs/{run_id}/decide",
                           data={"decision": "approve", "csrf": csrf_of(bob.get(f"/runs/{run_id}").text)})
        assert refused.status_code == 403 and "bob" in refused.text
        viewer = httpx.post(f"{url}/api/runs/{run_id}/approve", json={"reason": "x"},
                            headers={"Authorization": f"Bearer {tokens['vic']}"})
        assert viewer.status_code == 403
        for path, body in (("/api/switches", {"scope": "all"}), (f"/api/runs/{run_id}/replay", {}),
                           (f"/api/runs/{run_id}/cancel", {"reason": "x"})):
            assert httpx.post(f"{url}{path}", json=body,
                              headers={"Authorization": f"Bearer {tokens['vic']}"}).status_code == 403
        vic = signed_in(url, tokens["vic"])
        assert vic.get("/tokens").status_code == 403  # not an admin
        assert run_id in signed_in(url, tokens["alice"]).get("/approvals").text  # hers, as one of @qa
    assert decided(ledger, run_id) == [] and Fleet(ledger).switches() == []
    refusals = [e.data.rule for e in ledger.events(run_id) if isinstance(e.data, ev.PolicyDecision)
                and e.data.rule.startswith("approvals.")]
    assert refusals == ["approvals.not_owner"]  # bob's try is on the record; vic was stopped at the door


def test_two_owners_approving_at_once_record_exactly_one_decision(store, repo: Path, sqlite_url: str):
    ledger, run_id, tokens = store
    with web_server(sqlite_url, repo) as url:
        answers: list[int] = []
        barrier = threading.Barrier(2)

        def approve(name: str) -> None:
            barrier.wait()
            answers.append(httpx.post(f"{url}/api/runs/{run_id}/approve", json={"reason": name}, timeout=60,
                                      headers={"Authorization": f"Bearer {tokens[name]}"}).status_code)

        threads = [threading.Thread(target=approve, args=(name,)) for name in ("alice", "carol")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(answers) == [200, 409]
        wait_status(ledger, run_id, "succeeded")
        again = httpx.post(f"{url}/api/runs/{run_id}/approve", json={},
                           headers={"Authorization": f"Bearer {tokens['alice']}"})
        assert again.status_code == 409 and "not awaiting approval" in again.json()["detail"]
    assert len(decided(ledger, run_id)) == 1 and ledger.verify(run_id).ok


def test_bad_input_is_a_clear_answer_never_a_broken_page(store, repo: Path, sqlite_url: str):
    ledger, run_id, tokens = store
    huge = "x" * 600_000
    ledger.record(run_id, ev.PolicyDecision(verdict="allow", rule="test.huge", reason=huge, call_id="c", step=0))
    with web_server(sqlite_url, repo) as url:
        alice = signed_in(url, tokens["alice"])
        page = alice.get(f"/runs/{run_id}")
        assert page.status_code == 200 and "more characters" in page.text and len(page.text) < 200_000
        assert "AKIAIOSFODNN7EXAMPLE" not in page.text  # masked when it was recorded
        missing = alice.get("/runs/20990101-000000-ffffff")
        assert missing.status_code == 404 and "no run" in missing.text
        assert alice.get("/api/runs/20990101-000000-ffffff").status_code == 404
        assert alice.get("/runs?since=yesterday").status_code == 400
        assert alice.get("/runs?before=notanumber").status_code == 400
        assert alice.get("/evidence/reports/..%2F..%2Fetc%2Fpasswd").status_code == 404
        assert alice.get("/jobs/nope").status_code == 404
        bearer = {"Authorization": f"Bearer {tokens['alice']}"}
        assert httpx.post(f"{url}/api/switches", json={"scope": "everything"}, headers=bearer).status_code == 422
        assert alice.post("/fleet/switches", data={"scope": "everything", "csrf": csrf_of(alice.get("/fleet").text)}
                          ).status_code == 400
        assert httpx.post(f"{url}/api/switches", json={}, headers=bearer).status_code == 422
        all_pages = [alice.get(path) for path in ("/runs", "/approvals", "/fleet", "/evidence")]
        assert all(answer.status_code == 200 for answer in all_pages)
        assert not any(token in answer.text for answer in all_pages for token in tokens.values())


def test_the_kill_switch_and_its_release_are_recorded_naming_who(store, repo: Path, sqlite_url: str):
    ledger, _, tokens = store
    with web_server(sqlite_url, repo) as url:
        alice = signed_in(url, tokens["alice"])
        csrf = csrf_of(alice.get("/fleet").text)
        assert alice.post("/fleet/switches", data={"scope": "all", "reason": "incident 7", "csrf": csrf}
                          ).status_code == 303
        assert "incident 7" in alice.get("/fleet").text
        assert alice.post("/fleet/switches/release", data={"scope": "all", "csrf": csrf}).status_code == 303
        assert alice.post("/fleet/switches/release", data={"scope": "all", "csrf": csrf}).status_code == 404
    log = [(e.type, e.payload["by"]) for e in ledger.events("fleet")]
    assert log == [("switch_set", "alice"), ("switch_released", "alice")] and ledger.verify("fleet").ok


def test_runs_are_filtered_and_paged_without_gaps_or_repeats(repo: Path, tmp_path: Path, sqlite_url: str):
    ledger = Ledger(sqlite_url)
    for n in range(130):
        ledger.create_run(f"20260101-000000-{n:06x}", repo=str(repo) if n % 2 else "/other", instruction=f"t{n}",
                          status="succeeded" if n % 3 else "failed", model="scripted", architecture="harness")
    token = token_for(repo, "alice", "viewer", sqlite_url)
    with web_server(sqlite_url, repo) as url:
        client = signed_in(url, token)
        seen, page = [], client.get("/runs")
        while True:
            seen += re.findall(r'<a href="/runs/(20260101-[^"]+)">', page.text)
            following = re.search(r'rel="next" href="([^"]+)"', page.text)
            if following is None:
                break
            page = client.get(following.group(1).replace("&amp;", "&"))
        assert len(seen) == 130 and len(set(seen)) == 130
        failed = re.findall(r'<a href="/runs/(20260101-[^"]+)">', client.get("/runs?status=failed").text)
        assert len(failed) == 44 and all(int(run_id[-6:], 16) % 3 == 0 for run_id in failed)
        api = httpx.get(f"{url}/api/runs", params={"repo": "/other", "limit": 200},
                        headers={"Authorization": f"Bearer {token}"}).json()
        assert len(api) == 65
    ledger.close()


def test_serve_refuses_no_auth_beyond_loopback_and_no_auth_is_the_os_user(store, repo: Path, sqlite_url: str):
    ledger, run_id, _ = store
    refused = subprocess.run([*TETHER, "serve", "--host", "0.0.0.0", "--no-auth", "--db", sqlite_url], cwd=repo,
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "loopback only" in refused.stderr
    with web_server(sqlite_url, repo, "--no-auth") as url:
        client = httpx.Client(base_url=url)
        page = client.get(f"/runs/{run_id}")
        assert page.status_code == 200 and "OS user" in page.text
        assert client.post("/fleet/switches", data={"scope": "all", "reason": "x"}).status_code == 403  # no CSRF
        # the OS user asked for this run: they may not approve it
        answer = client.post(f"/runs/{run_id}/decide", data={"decision": "approve", "csrf": csrf_of(page.text)})
        assert answer.status_code == 403 and "asked for" in answer.text
    assert decided(ledger, run_id) == []


def test_replay_and_compare_run_in_the_background_and_link_their_run(store, repo: Path, sqlite_url: str):
    ledger, run_id, tokens = store
    bearer = {"Authorization": f"Bearer {tokens['alice']}"}
    with web_server(sqlite_url, repo) as url:
        assert httpx.post(f"{url}/api/runs/{run_id}/approve", json={"reason": "ok"}, headers=bearer).status_code == 200
        wait_status(ledger, run_id, "succeeded")
        job = httpx.post(f"{url}/api/runs/{run_id}/replay", json={}, headers=bearer).json()
        compared = httpx.post(f"{url}/api/runs/{run_id}/replay", json={"policy": '[commands]\ndeny = ["echo"]\n'},
                              headers=bearer).json()
        results = {}
        for started in (job, compared):
            deadline = time.time() + 90
            while (found := httpx.get(f"{url}/api/jobs/{started['id']}", headers=bearer).json())["state"] == "running":
                assert time.time() < deadline
                time.sleep(0.3)
            results[started["id"]] = found
        assert results[job["id"]]["state"] == "done" and "identical" in results[job["id"]]["result"]
        assert "divergence" in results[compared["id"]]["result"]
        replayed = results[job["id"]]["link"].removeprefix("/runs/")
        assert ledger.get_run(replayed).parent_run_id == run_id
        bad = httpx.post(f"{url}/api/runs/{run_id}/replay", json={"policy": "[budget]\nmax_usd = -1\n"},
                         headers=bearer)
        assert bad.status_code == 409 and "max_usd" in bad.json()["detail"]
