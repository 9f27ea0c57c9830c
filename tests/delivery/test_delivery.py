"""Delivery end to end: real runs pushed over git's smart-HTTP protocol to `git http-backend` on
loopback, and pull requests opened on a forge server speaking GitHub's, GitLab's and Gitea's
documented REST shapes, errors included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIX, bash, call, git, payloads, script
from tests.delivery.conftest import TOKEN_ENV, WRONG, World, fixed
from tests.delivery.servers import TOKEN
from tether.delivery.deliver import deliver, redelivery_due
from tether.delivery.remotes import DeliveryError, parse_remote, push_branch
from tether.ledger import Ledger
from tether.ledger import events as ev
from tether.policy import PolicyError, parse_policy
from tether.runner import RunSpec, start_run


def remote_ref(world: World, branch: str) -> str | None:
    found = subprocess.run(["git", "--git-dir", str(world.bare), "rev-parse", "--verify", "--quiet",
                            f"refs/heads/{branch}"], capture_output=True, text=True)
    return found.stdout.strip() or None


def test_a_succeeded_run_is_pushed_and_gets_one_pull_request_with_its_evidence(ledger, world, tmp_path):
    head_before, status_before = git(world.repo, "rev-parse", "HEAD"), git(world.repo, "status", "--porcelain")
    summary = fixed(ledger, world, tmp_path, world.policy())
    assert summary["status"] == "succeeded"
    (delivered,) = payloads(ledger, summary["run_id"], "delivered")
    assert remote_ref(world, summary["branch"]) == delivered["commit"] == summary["commit"]
    assert delivered["created"] and delivered["number"] == 1 and not delivered["draft"]
    (pull,) = world.forge.open_pulls("acme/shop")
    assert pull.head == summary["branch"] and pull.base == "main"
    assert pull.title.startswith("tether: Make the tests pass")
    for evidence in ("Make the tests pass", "scripted:", "tests: passed", "tether verify", "tether replay",
                     summary["run_id"], "budget used", "1 files, +", "| tier | none"):
        assert evidence in pull.body, evidence
    assert pull.labels == ["tether"]
    assert pull.reviewers == ["alice"]  # raindrops.py's owners, less the person who asked for the run
    # the user's checkout is as it was; the token is nowhere in the log
    assert git(world.repo, "rev-parse", "HEAD") == head_before
    assert git(world.repo, "status", "--porcelain") == status_before
    assert all(TOKEN not in event.payload_json for event in ledger.events(summary["run_id"]))


def test_delivering_again_updates_the_same_request(ledger, world, tmp_path):
    summary = fixed(ledger, world, tmp_path, world.policy())
    again = deliver(ledger, summary["run_id"])
    assert again.number == 1 and not again.created
    assert len(world.forge.open_pulls("acme/shop")) == 1
    assert [d["created"] for d in payloads(ledger, summary["run_id"], "delivered")] == [True, False]


def test_a_run_that_did_not_succeed_is_delivered_only_on_request_and_as_a_draft(ledger, world, tmp_path):
    turns = [call("write_file", path="raindrops.py", content=WRONG)]
    policy = world.policy() + "[budget]\nmax_steps = 1\n[agent]\ncheck_after_write = true\n"
    summary = fixed(ledger, world, tmp_path, policy, turns)
    assert summary["status"] == "stopped" and payloads(ledger, summary["run_id"], "delivered") == []
    assert remote_ref(world, summary["branch"]) is None
    delivered = deliver(ledger, summary["run_id"])
    assert delivered.draft
    (pull,) = world.forge.open_pulls("acme/shop")
    assert pull.draft and "failed (exit 1)" in pull.body and "FAILED raindrops_test.py" in pull.body


def test_two_workers_delivering_the_same_run_at_once_open_one_request(world, tmp_path, sqlite_url):
    ledger = Ledger(sqlite_url)
    summary = fixed(ledger, world, tmp_path, world.policy(mode="push"))
    world.forge.slow_s = 0.3  # both find nothing before either creates
    command = [sys.executable, "-m", "tether", "deliver", summary["run_id"], "--mode", "pull_request",
               "--db", sqlite_url, "--repo", str(world.repo)]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    assert len(world.forge.pulls["acme/shop"]) == 1
    created = [d["created"] for d in payloads(ledger, summary["run_id"], "delivered") if d["mode"] == "pull_request"]
    assert sorted(created) == [False, True]
    assert ledger.verify(summary["run_id"]).ok
    ledger.close()


def test_a_worker_killed_between_push_and_request_is_finished_by_the_next_delivery(ledger, world, tmp_path):
    summary = fixed(ledger, world, tmp_path, world.policy(mode="branch"))
    pushed = push_branch(world.repo, parse_remote(world.remote), summary["branch"], summary["commit"], "main", TOKEN)
    assert remote_ref(world, summary["branch"]) == summary["commit"] and pushed.endswith(summary["branch"])
    policy = parse_policy(world.policy(), Path("t.toml")).delivery
    first, second = deliver(ledger, summary["run_id"], policy), deliver(ledger, summary["run_id"], policy)
    assert (first.created, second.created) == (True, False) and first.number == second.number
    assert len(world.forge.pulls["acme/shop"]) == 1


@pytest.mark.parametrize("status, headers, kind", [
    (401, {}, "auth"),
    (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "4102444800"}, "rate_limit"),
    (429, {"retry-after": "30"}, "rate_limit"),
    (404, {}, "not_found"),
    (502, {}, "server"),
])
def test_forge_errors_are_recorded_and_the_next_delivery_succeeds(ledger, world, tmp_path, status, headers, kind):
    world.forge.fail_next = [(status, {"message": "nope"}, headers)]
    summary = fixed(ledger, world, tmp_path, world.policy())
    assert summary["status"] == "succeeded"  # a delivery failure never changes the run's outcome
    (failed,) = payloads(ledger, summary["run_id"], "delivery_failed")
    assert (failed["stage"], failed["kind"]) == ("pull_request", kind)
    if kind == "rate_limit":
        assert failed["retry_at"] is not None
    assert remote_ref(world, summary["branch"]) == summary["commit"]  # the push had happened
    assert deliver(ledger, summary["run_id"]).created


def test_the_command_line_says_why_and_exits_1_on_a_refusal_2_on_bad_input(world, tmp_path, sqlite_url):
    ledger = Ledger(sqlite_url)
    summary = fixed(ledger, world, tmp_path, world.policy(mode="push"))
    base = [sys.executable, "-m", "tether", "deliver", summary["run_id"], "--db", sqlite_url, "--repo", str(world.repo),
            "--mode", "pull_request"]
    env = {**os.environ, TOKEN_ENV: "wrong-token"}
    refused = subprocess.run(base, capture_output=True, text=True, env=env)  # the git server says 401 to the push
    assert refused.returncode == 1 and "refused the credentials" in refused.stderr
    assert "wrong-token" not in refused.stderr
    unset = {k: v for k, v in env.items() if k != TOKEN_ENV}
    no_token = subprocess.run(base, capture_output=True, text=True, env=unset)
    assert no_token.returncode == 2 and f"set the environment variable {TOKEN_ENV}" in no_token.stderr
    done = subprocess.run([*base, "--json"], capture_output=True, text=True)
    assert done.returncode == 0 and '"created": true' in done.stdout
    kinds = [(f["stage"], f["kind"]) for f in payloads(ledger, summary["run_id"], "delivery_failed")]
    assert kinds == [("push", "auth"), ("config", "config")]
    ledger.close()


@pytest.mark.parametrize("world", ["github"], indirect=True)
def test_push_never_forces_and_never_leaves_the_runs_own_branch(ledger, world, tmp_path):
    summary = fixed(ledger, world, tmp_path, world.policy(mode="branch"))
    # someone else's commit on the run's branch name, not an ancestor of the run's commit
    other = git(world.repo, "commit-tree", "main^{tree}", "-p", "main", "-m", "someone else").strip()
    git(world.repo, "push", "-q", str(world.bare), f"{other}:refs/heads/{summary['branch']}")
    with pytest.raises(DeliveryError) as refused:
        deliver(ledger, summary["run_id"], parse_policy(world.policy(mode="push"), Path("t.toml")).delivery)
    assert refused.value.kind == "conflict"
    assert remote_ref(world, summary["branch"]) == other  # not overwritten
    for branch in ("main", "feature/x", "tether"):
        with pytest.raises(DeliveryError, match="pushes only its runs' own branches"):
            push_branch(world.repo, parse_remote(world.remote), branch, summary["commit"], "main", TOKEN)
    assert remote_ref(world, "main") == git(world.repo, "rev-parse", "main").strip()


@pytest.mark.parametrize("world", ["github"], indirect=True)
def test_a_push_with_a_wrong_token_is_an_auth_failure_that_names_no_token(ledger, world, tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "ghp_" + "x" * 36)
    summary = fixed(ledger, world, tmp_path, world.policy(mode="push"))
    (failed,) = payloads(ledger, summary["run_id"], "delivery_failed")
    assert (failed["stage"], failed["kind"]) == ("push", "auth") and "ghp_" not in failed["reason"]
    assert remote_ref(world, summary["branch"]) is None


@pytest.mark.parametrize("world", ["github"], indirect=True)
def test_an_unreachable_forge_is_a_network_failure(ledger, world, tmp_path):
    from tests.gateway.serve import free_port

    policy = world.policy().replace(world.api, f"http://127.0.0.1:{free_port()}/api/v3")
    summary = fixed(ledger, world, tmp_path, policy)
    (failed,) = payloads(ledger, summary["run_id"], "delivery_failed")
    assert failed["kind"] == "network"


@pytest.mark.parametrize("world", ["github"], indirect=True)
def test_bad_delivery_settings_are_named(ledger, world, tmp_path):
    summary = fixed(ledger, world, tmp_path, world.policy(mode="branch"))
    assert payloads(ledger, summary["run_id"], "delivered") == []  # a branch run is not delivered
    with pytest.raises(DeliveryError, match="delivers as a local branch"):
        deliver(ledger, summary["run_id"])
    unknown = parse_policy(world.policy().replace(world.remote, "upstream"), Path("t.toml")).delivery
    with pytest.raises(DeliveryError, match="no remote 'upstream'"):
        deliver(ledger, summary["run_id"], unknown)
    guessed = parse_policy(world.policy().replace('forge = "github"\n', ""), Path("t.toml")).delivery
    with pytest.raises(DeliveryError, match=r"cannot tell which forge 127\.0\.0\.1 is: set \[delivery\] forge"):
        deliver(ledger, summary["run_id"], guessed)
    local = tmp_path / "local.git"
    git(tmp_path, "init", "-q", "--bare", str(local))
    to_a_path = guessed.model_copy(update={"remote": f"file://{local}"})
    with pytest.raises(DeliveryError, match=r"is a path on this machine, not a forge.*--mode push"):
        deliver(ledger, summary["run_id"], to_a_path)


@pytest.mark.parametrize("world", ["github"], indirect=True)
def test_a_run_that_changed_nothing_is_not_delivered(ledger, world, tmp_path):
    model = script(tmp_path / "nothing.json", [call("submit", summary="nothing to do")])
    summary = start_run(ledger, RunSpec("x", world.repo, parse_policy(world.policy(mode="branch"), Path("t.toml")),
                                        model=model))
    with pytest.raises(DeliveryError, match="changed nothing"):
        deliver(ledger, summary["run_id"], parse_policy(world.policy(), Path("t.toml")).delivery)


@pytest.mark.parametrize("text, problem", [
    ('[delivery]\nmode = "merge"', "mode"),
    ('[delivery]\ntoken_env = "MY TOKEN"', "token_env must name an environment variable"),
    ('[delivery]\nrepository = "shop"', 'repository must be "owner/name"'),
    ('[delivery]\napi_url = "ftp://x"', "api_url must be an http"),
    ('[delivery]\nforge = "bitbucket"', "forge"),
    ('[delivery]\ntoken = "ghp_x"', "token"),  # a token never goes in the policy file
])
def test_bad_delivery_policy_is_refused_with_the_key(text, problem):
    with pytest.raises(PolicyError, match=problem):
        parse_policy(text, Path("tether.toml"))


@pytest.mark.parametrize("url, host, path, forge", [
    ("https://github.com/acme/shop.git", "github.com", "acme/shop", "github"),
    ("https://x-access-token:secret@github.com/acme/shop", "github.com", "acme/shop", "github"),
    ("git@gitlab.com:group/sub/shop.git", "gitlab.com", "group/sub/shop", "gitlab"),
    ("ssh://git@codeberg.org/acme/shop.git", "codeberg.org", "acme/shop", "gitea"),
    ("https://gitea.internal:3000/acme/shop.git", "gitea.internal", "acme/shop", "gitea"),
    ("https://git.example.com/acme/shop.git", "git.example.com", "acme/shop", None),
])
def test_remote_urls_are_read_and_credentials_dropped(url, host, path, forge):
    remote = parse_remote(url)
    assert (remote.host, remote.path, remote.forge) == (host, path, forge)
    assert "secret" not in remote.url


@pytest.mark.parametrize("world", ["github"], indirect=True)
def test_the_forge_token_never_reaches_the_sandbox(ledger, world, tmp_path):
    turns = [bash("env; git config --list; cat ~/.git-credentials"),
             call("write_file", path="raindrops.py", content=FIX), call("submit", summary="done")]
    summary = fixed(ledger, world, tmp_path, world.policy(), turns)
    assert summary["status"] == "succeeded" and payloads(ledger, summary["run_id"], "delivered")
    (seen,) = [r["observation"] for r in payloads(ledger, summary["run_id"], "tool_result")][:1]
    assert TOKEN not in seen and TOKEN_ENV not in seen and "PATH=" in seen


def _failed(kind: str, retry_at: float | None = None) -> ev.DeliveryFailed:
    return ev.DeliveryFailed(mode="pull_request", stage="pull_request", kind=kind, reason=kind, retry_at=retry_at)


def test_a_passing_delivery_failure_is_due_again_with_backoff_and_a_lasting_one_is_not(ledger):
    ledger.create_run("r1", repo="/r", instruction="t")
    assert redelivery_due(ledger.events("r1")) is None
    ledger.record("r1", _failed("server"))
    first = ledger.events("r1")[-1]
    assert redelivery_due(ledger.events("r1")) == pytest.approx(first.ts + 30)
    ledger.record("r1", _failed("network"))
    assert redelivery_due(ledger.events("r1")) == pytest.approx(ledger.events("r1")[-1].ts + 60)
    ledger.record("r1", _failed("rate_limit", retry_at=4102444800.0))
    assert redelivery_due(ledger.events("r1")) == 4102444800.0  # the forge said when
    ledger.record("r1", _failed("server"))
    assert redelivery_due(ledger.events("r1")) is None  # four in a row: a person looks
    ledger.record("r1", ev.Delivered(mode="push", remote="u", ref="r", commit="c"))
    ledger.record("r1", _failed("auth"))
    assert redelivery_due(ledger.events("r1")) is None  # a bad token does not heal by waiting


@pytest.mark.parametrize("world", ["github"], indirect=True)
def test_a_worker_delivers_again_when_the_forge_rate_limited_it(world, tmp_path, sqlite_url):
    (world.repo / "tether.toml").write_text(world.policy())
    world.forge.fail_next = [(429, {"message": "slow down"}, {"retry-after": "1"})]
    model = script(tmp_path / "t.json", [call("write_file", path="raindrops.py", content=FIX),
                                         call("submit", summary="done")])
    submitted = subprocess.run([sys.executable, "-m", "tether", "submit", "Make the tests pass", "--repo",
                                str(world.repo), "--model", model, "--db", sqlite_url, "--json"],
                               capture_output=True, text=True)
    assert submitted.returncode == 0, submitted.stderr
    worker = subprocess.run([sys.executable, "-m", "tether", "worker", "--db", sqlite_url, "--id", "w1",
                             "--idle-exit", "3"], capture_output=True, text=True, timeout=180)
    ledger = Ledger(sqlite_url)
    run_id = json.loads(submitted.stdout)["task_id"]
    kinds = [e.type for e in ledger.events(run_id) if e.type in ("delivered", "delivery_failed")]
    assert kinds == ["delivery_failed", "delivered"], worker.stderr
    assert len(world.forge.open_pulls("acme/shop")) == 1
    ledger.close()
