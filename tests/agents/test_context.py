"""`[agent] show_named_files`: the files a task names are shown with it, read from the base commit,
recorded with the run, and shown again when the run is resumed; links, folders, large or binary
files, paths out of the repository and files the agent changed are never what is shown."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.conftest import CHECK, FIX, git, payloads
from tests.models.fake_api import api_server, openai_reply
from tether.agents.context import MAX_FILE_CHARS, named_files_context, named_paths
from tether.ledger import Ledger
from tether.policy import parse_policy
from tether.runner import RunSpec, resume_run, start_run

TASK = ("Implement raindrops.py so that the tests in raindrops_test.py pass (run them with "
        "`python -m pytest -q raindrops_test.py`).")


def commit_all(repo: Path, message: str = "more") -> str:
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=dev@example.com", "-c", "user.name=Dev", "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD").strip()


def shown(context: str) -> list[str]:
    """The paths shown: each a line of its own, then a fence."""
    return re.findall(r"^(\S+):\n`{3,}$", context, re.MULTILINE)


def test_paths_are_read_in_order_once_and_never_out_of_the_repository():
    task = "Fix `src/app.py` and app_test.py; see ./docs/a.md, ../secret.txt, src/app.py again, a/../b.py."
    assert named_paths(task) == ["src/app.py", "app_test.py", "docs/a.md"]


def test_the_named_files_of_the_base_commit_are_shown(repo: Path):
    context = named_files_context(repo, "HEAD", TASK)
    assert shown(context) == ["raindrops.py", "raindrops_test.py"]
    assert (repo / "raindrops_test.py").read_text().rstrip() in context


def test_a_file_the_task_already_quotes_is_not_shown_twice(repo: Path):
    task = f"{TASK}\n\nThe current raindrops.py:\n```python\n{(repo / 'raindrops.py').read_text()}```"
    assert shown(named_files_context(repo, "HEAD", task)) == ["raindrops_test.py"]


def test_only_committed_regular_small_text_files_are_shown(repo: Path, tmp_path: Path):
    outside = tmp_path / "outside.txt"
    outside.write_text("HOST SECRET\n")
    os.symlink(outside, repo / "link.txt")  # a committed link: shown would be the host's file
    (repo / "folder.py").mkdir()
    (repo / "folder.py" / "inner.txt").write_text("inner\n")
    (repo / "big.txt").write_text("x" * (MAX_FILE_CHARS + 1))
    (repo / "blob.bin").write_bytes(b"\x00\xff\xfe binary\n")
    (repo / "latin.txt").write_bytes(b"caf\xe9\n")
    (repo / "-rf.txt").write_text("an option-like name\n")
    base = commit_all(repo)
    (repo / "untracked.txt").write_text("not committed\n")
    (repo / "raindrops_test.py").write_text("# changed after the commit\n")
    task = ("Look at link.txt, folder.py, big.txt, blob.bin, latin.txt, untracked.txt, -rf.txt, "
            "../outside.txt and raindrops_test.py.")
    context = named_files_context(repo, base, task)
    assert shown(context) == ["-rf.txt", "raindrops_test.py"]
    assert "HOST SECRET" not in context and "changed after the commit" not in context
    assert "def test_" in context  # the committed test file, not the worktree's


def test_nothing_is_shown_when_nothing_named_exists_or_the_commit_is_unknown(repo: Path):
    assert named_files_context(repo, "HEAD", "Make it faster.") == ""
    assert named_files_context(repo, "HEAD", "Fix nowhere.py") == ""
    assert named_files_context(repo, "0" * 40, TASK) == ""


def test_a_file_holding_a_fence_keeps_its_fence_whole(repo: Path):
    (repo / "notes.md").write_text("```python\nprint(1)\n```\n")
    base = commit_all(repo)
    context = named_files_context(repo, base, "Update notes.md")
    assert "notes.md:\n````\n```python\nprint(1)\n```\n````" in context


def run_over_openai(repo: Path, tmp_path: Path, policy_text: str, replies: list) -> tuple[dict, list[dict], Ledger]:
    policy = parse_policy(policy_text, Path("tether.toml"))
    ledger = Ledger(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with api_server(replies) as (url, received):
        summary = start_run(ledger, RunSpec(TASK, repo, policy, model="openai:m", base_url=url))
    return summary, received, ledger


def first_user_message(request: dict) -> str:
    return next(m["content"] for m in request["body"]["messages"] if m["role"] == "user")


def test_a_run_shows_the_model_the_named_files_and_records_what_it_showed(repo: Path, tmp_path: Path):
    replies = [openai_reply("", [("c1", "write_file", {"path": "raindrops.py", "content": FIX})]),
               openai_reply("", [("c2", "submit", {"summary": "done"})])]
    summary, received, ledger = run_over_openai(repo, tmp_path, CHECK, replies)
    assert summary["status"] == "succeeded", summary
    (started,) = payloads(ledger, summary["run_id"], "run_started")
    assert started["task"] == TASK and shown(started["context"]) == ["raindrops.py", "raindrops_test.py"]
    for request in received:  # every turn of the conversation holds it
        assert first_user_message(request) == f"{TASK}\n\n{started['context']}"


def test_turned_off_the_model_sees_the_task_alone(repo: Path, tmp_path: Path):
    replies = [openai_reply("", [("c1", "submit", {"summary": "nothing"})])]
    summary, received, ledger = run_over_openai(repo, tmp_path, "[agent]\nshow_named_files = false\n", replies)
    assert payloads(ledger, summary["run_id"], "run_started")[0]["context"] is None
    assert first_user_message(received[0]) == TASK


def test_a_resumed_run_is_shown_what_it_was_shown_at_the_start(repo: Path, tmp_path: Path):
    down = (503, {"error": {"message": "down", "type": "server"}}, {})
    policy = parse_policy(CHECK + "[agent]\nmax_retries = 1\nretry_base_s = 0.01\n", Path("tether.toml"))
    ledger = Ledger(f"sqlite:///{tmp_path / 'db.sqlite'}")
    replies = [down, down]
    with api_server(replies) as (url, received):
        held = start_run(ledger, RunSpec(TASK, repo, policy, model="openai:m", base_url=url))
        assert held["status"] == "waiting", held
        # the base branch moves on meanwhile: the resumed run still sees the files of its base commit
        (repo / "raindrops_test.py").write_text("# rewritten on main\n")
        commit_all(repo)
        replies += [openai_reply("", [("c1", "write_file", {"path": "raindrops.py", "content": FIX})]),
                    openai_reply("", [("c2", "submit", {"summary": "done"})])]
        summary = resume_run(ledger, held["run_id"])
    assert summary["status"] == "succeeded", summary
    context = payloads(ledger, summary["run_id"], "run_started")[0]["context"]
    assert "def test_" in context and "rewritten on main" not in context
    assert {first_user_message(request) for request in received} == {f"{TASK}\n\n{context}"}


def test_a_secret_in_a_named_file_is_masked_in_the_log(repo: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TETHER_TEST_TOKEN", "s3cr3t-value-123456")
    (repo / "settings.txt").write_text("token = s3cr3t-value-123456\n")
    commit_all(repo)
    policy = parse_policy("", Path("tether.toml"))
    ledger = Ledger(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with api_server([openai_reply("", [("c1", "submit", {"summary": "x"})])]) as (url, _):
        summary = start_run(ledger, RunSpec("Read settings.txt", repo, policy, model="openai:m", base_url=url))
    context = payloads(ledger, summary["run_id"], "run_started")[0]["context"]
    assert "settings.txt" in context and "s3cr3t-value-123456" not in context
