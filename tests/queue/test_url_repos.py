"""Repositories named by URL: each worker keeps its own mirror, fetched over git's smart-HTTP
protocol from a loopback server before every run; two workers standing in for two machines share
only the store (PostgreSQL) and the URL."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import CHECK, FIX, call, git, script
from tests.delivery.servers import TOKEN, bare_repo, git_http_server
from tests.queue.helpers import TETHER, stop, tether, wait_until
from tether.ledger import Ledger
from tether.queue.tasks import TaskError, Tasks
from tether.workspace.git import GitError
from tether.workspace.mirror import check_url, checkout, is_url


def _machine(root: Path, url: str) -> dict[str, str]:
    """A worker machine's environment: its own home (with git's credential store holding the token
    for the server, as a worker's setup would) and its own mirror cache."""
    home = root / "home"
    home.mkdir(parents=True)
    (home / ".gitconfig").write_text("[credential]\n\thelper = store\n")
    host = url.split("://", 1)[1].split("/", 1)[0]
    (home / ".git-credentials").write_text(f"http://x-access-token:{TOKEN}@{host}\n")
    return {"HOME": str(home), "TETHER_MIRRORS": str(root / "mirrors")}


@pytest.fixture
def served(repo: Path, tmp_path: Path):
    """The sample repository on a loopback git server, with a policy whose check and push it keeps."""
    (repo / "tether.toml").write_text(CHECK + '[delivery]\nmode = "push"\n')
    git(repo, "add", "tether.toml")
    git(repo, "-c", "user.email=dev@example.com", "-c", "user.name=Dev", "commit", "-qm", "policy")
    root = tmp_path / "server"
    root.mkdir()
    bare = bare_repo(root, "shop", repo)
    with git_http_server(root) as base:
        yield f"{base}/shop.git", bare


def _push_commit(bare: Path, tmp_path: Path, message: str, branch: str = "main") -> str:
    work = tmp_path / f"clone-{time.monotonic_ns()}"
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True)
    git(work, "checkout", "-q", "-B", branch)
    (work / "NEWS").write_text(message + "\n")
    git(work, "add", "NEWS")
    git(work, "-c", "user.email=dev@example.com", "-c", "user.name=Dev", "commit", "-qm", message)
    git(work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
    return git(work, "rev-parse", "HEAD").strip()


def test_a_url_is_mirrored_once_and_fetched_before_every_run(served, tmp_path, monkeypatch):
    url, bare = served
    for name, value in _machine(tmp_path / "m", url).items():
        monkeypatch.setenv(name, value)
    first = checkout(url)
    assert first.branch == "main" and first.commit == git(bare, "rev-parse", "main").strip()
    assert git(first.path, "remote", "get-url", "origin").strip() == url  # deliveries push to the URL
    assert (tmp_path / "m" / "mirrors").is_dir() and first.path.is_relative_to(tmp_path / "m" / "mirrors")
    git(first.path, "branch", "tether/run-1", first.commit)  # a run's branch, kept across fetches
    newer = _push_commit(bare, tmp_path, "second")
    feature = _push_commit(bare, tmp_path, "feature work", branch="feature")
    second = checkout(url)
    assert second.commit == newer and second.path == first.path
    assert checkout(url, "feature").commit == feature
    git(bare, "branch", "-D", "feature")  # gone on the remote: gone from the mirror, runs' branches stay
    with pytest.raises(GitError, match="has no branch 'feature'"):
        checkout(url, "feature")
    assert git(first.path, "rev-parse", "tether/run-1").strip() == first.commit
    assert [entry.name for entry in first.path.iterdir()] == [".git"]  # no working tree to go stale or be raced


def test_a_url_the_worker_cannot_read_leaves_no_half_made_mirror(served, tmp_path, monkeypatch):
    url, _ = served
    monkeypatch.setenv("HOME", str(tmp_path))  # no credentials here
    monkeypatch.setenv("TETHER_MIRRORS", str(tmp_path / "mirrors"))
    with pytest.raises(GitError, match="clone"):
        checkout(url)
    assert not list((tmp_path / "mirrors").glob("*/mirror.git"))


@pytest.mark.parametrize(("url", "problem"), [
    ("https://bob:hunter2@git.example.com/acme/shop.git", "must not carry a password"),
    ("ext::sh -c touch% /tmp/pwned", "is not a repository URL"),
    ("-uploadpack=touch /tmp/pwned", "is not a repository URL"),
    ("ftp://git.example.com/acme/shop.git", "the scheme must be one of"),
    ("not a url", "is not a repository URL"),
])
def test_urls_git_must_not_fetch_are_refused(url, problem):
    with pytest.raises(GitError, match=problem):
        check_url(url)


def test_is_url_tells_urls_from_local_paths(tmp_path):
    assert is_url("https://git.example.com/a/b.git") and is_url("git@github.com:acme/shop.git")
    assert not is_url(str(tmp_path)) and not is_url("/srv/repos/shop")


def test_submitting_by_url_refuses_what_would_not_run(sqlite_url, repo):
    ledger = Ledger(sqlite_url)
    tasks = Tasks(ledger)
    try:
        with pytest.raises(TaskError, match="--policy is for a local repository"):
            tasks.submit("x", repo, url="https://git.example.com/a/b.git", policy=repo / "tether.toml")
        with pytest.raises(TaskError, match="--branch is for a repository named by --url"):
            tasks.submit("x", repo, branch="main")
        with pytest.raises(GitError, match="must not carry a password"):
            tasks.submit("x", repo, url="https://u:p@git.example.com/a/b.git")
    finally:
        tasks.close()
        ledger.close()


def test_two_workers_on_two_machines_take_tasks_named_by_url(db_url, served, tmp_path):
    url, bare = served
    ledger = Ledger(db_url)
    model = script(tmp_path / "fix.json", [call("write_file", path="raindrops.py", content=FIX),
                                           call("submit", summary="done")])
    ids = []
    for n in range(6):
        submitted = tether("submit", f"Make the tests pass ({n})", "--url", url, "--model", model, "--db",
                           db_url, "--json", cwd=tmp_path)
        assert submitted.returncode == 0, submitted.stderr
        ids.append(submitted.stdout.split('"task_id": "')[1].split('"')[0])
    workers = []
    for name in ("east", "west"):
        machine = tmp_path / name
        env = {**os.environ, **_machine(machine, url)}
        workers.append(subprocess.Popen([*TETHER, "worker", "--db", db_url, "--id", name, "--idle-exit", "4"],
                                        cwd=machine, env=env, stdout=(machine / "log").open("wb"),
                                        stderr=subprocess.STDOUT))
    try:
        wait_until(lambda: all(w.poll() is not None for w in workers), 240, "both workers to drain the queue")
    finally:
        stop(workers)
    runs = {run_id: ledger.get_run(run_id) for run_id in ids}
    logs = "\n".join((tmp_path / name / "log").read_text() for name in ("east", "west"))
    assert {run.status for run in runs.values()} == {"succeeded"}, logs
    assert {run.repo for run in runs.values()} == {url}  # the fleet knows the repository by its URL
    tasks = Tasks(ledger)
    executors = {run_id: tasks.get(run_id).executor for run_id in ids}
    tasks.close()
    assert set(executors.values()) == {"east", "west"}, logs
    for run_id, run in runs.items():
        started = ledger.events(run_id)[0].data
        assert started.repo_url == url and started.base_branch == "main"
        assert started.policy["delivery"]["mode"] == "push"  # the policy of the fetched commit
        assert Path(started.repo).is_relative_to(tmp_path / executors[run_id] / "mirrors")  # its own mirror
        assert git(bare, "rev-parse", f"refs/heads/{run.branch}").strip() == run.summary["commit"]  # pushed
    ledger.close()
