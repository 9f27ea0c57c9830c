"""`[budget] max_wall_s` holds within a step, not only between steps: a check, a model request, a
wait before retrying one and a redrawn reply are each given only the wall time left, and the run
stops on the budget instead of running a minute past it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import FIX, call, payloads, run_scripted
from tests.models.fake_api import anthropic_reply, api_server, openai_reply
from tether.ledger import Ledger
from tether.models.base import Usage
from tether.models.text_turns import ACTIONS, text_turn
from tether.policy import parse_policy
from tether.runner import RunSpec, start_run

SLOW_CHECK = '[[checks]]\nname = "slow"\ncommand = "sleep 30"\ntimeout_s = 60\n'


def assert_stopped_on_the_wall(summary: dict, budget_s: float) -> None:
    assert summary["status"] == "stopped", summary
    assert summary["denials"][-1]["rule"] == "budget.max_wall_s", summary["denials"]
    assert summary["usage"]["wall_s"] < budget_s + 6, summary["usage"]


def test_a_check_is_given_only_the_wall_time_left(ledger: Ledger, repo: Path, tmp_path: Path):
    turns = [call("write_file", path="raindrops.py", content=FIX), call("submit", summary="done")]
    started = time.monotonic()
    summary = run_scripted(ledger, repo, tmp_path, turns, "[budget]\nmax_wall_s = 3\n" + SLOW_CHECK)
    assert time.monotonic() - started < 15  # not the check's own 60 s, nor its 30 s of sleep
    assert_stopped_on_the_wall(summary, 3)
    [check] = payloads(ledger, summary["run_id"], "check_finished")
    assert check["timed_out"] and not check["passed"]


@pytest.mark.parametrize("model, reply", [("openai:m", openai_reply("", [("c1", "submit", {"summary": "x"})])),
                                          ("anthropic:claude-haiku-4-5",
                                           anthropic_reply("", [("c1", "submit", {"summary": "x"})]))])
def test_a_hung_model_server_is_waited_for_only_until_the_wall_budget_ends(repo: Path, tmp_path: Path, monkeypatch,
                                                                           model: str, reply):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-real")
    policy = parse_policy("[budget]\nmax_wall_s = 3\n[agent]\nmax_retries = 5\n", Path("tether.toml"))
    ledger = Ledger(f"sqlite:///{tmp_path / 'db.sqlite'}")
    started = time.monotonic()
    with api_server([reply] * 6, delay_s=40) as (url, received):
        summary = start_run(ledger, RunSpec("fix", repo, policy, model=model, base_url=url))
    assert time.monotonic() - started < 20  # the client's own timeout is 300 s
    assert_stopped_on_the_wall(summary, 3)
    errors = payloads(ledger, summary["run_id"], "model_error")
    assert errors and all(error["transient"] for error in errors), errors
    assert len(received) == len(errors) <= 3  # each try had the time left, not a fresh budget


def test_a_retry_after_longer_than_the_budget_is_not_slept_through(repo: Path, tmp_path: Path):
    replies = [(429, {"error": {"message": "slow down", "type": "rate_limit"}}, {"retry-after": "45"})]
    policy = parse_policy("[budget]\nmax_wall_s = 2\n", Path("tether.toml"))
    ledger = Ledger(f"sqlite:///{tmp_path / 'db.sqlite'}")
    started = time.monotonic()
    with api_server(replies) as (url, received):
        summary = start_run(ledger, RunSpec("fix", repo, policy, model="openai:m", base_url=url))
    assert time.monotonic() - started < 12
    assert_stopped_on_the_wall(summary, 2)
    assert len(received) == 1
    [error] = payloads(ledger, summary["run_id"], "model_error")
    assert error["retry_in_s"] <= 2.5, error  # what was waited, not the 45 s asked for


def test_a_repeated_reply_is_not_drawn_again_once_the_deadline_has_passed():
    drawn: list[int] = []
    repeat = "```bash\nls\n```"

    def generate(rendered, grammar, temperature, seed):
        drawn.append(seed)
        return repeat, Usage(10, 5)

    history = [{"role": "system", "content": "s"}, {"role": "user", "content": "task"},
               {"role": "assistant", "content": repeat,
                "tool_calls": [{"id": "c0", "name": "bash", "arguments": {"command": "ls"}}]},
               {"role": "tool", "tool_call_id": "c0", "content": "a.py"}]
    text_turn(generate, history, ACTIONS, 0, "m")
    assert len(drawn) == 3  # a repeat is drawn again while there is time
    drawn.clear()
    reply = text_turn(generate, history, ACTIONS, 0, "m", deadline=time.time() - 1)
    assert len(drawn) == 1 and reply.usage == Usage(10, 5)
