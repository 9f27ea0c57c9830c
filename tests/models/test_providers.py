"""Providers through their official SDKs against real HTTP servers on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import CHECK, FIX, event_types, git, payloads
from tests.models.fake_api import anthropic_reply, api_server, openai_reply
from tether.ledger import Ledger
from tether.ledger.queries import held_reason
from tether.models import ModelError, ToolSpec, TransientModelError, make_provider
from tether.models.base import Usage
from tether.models.prices import cost_of, estimate_usd, price_usd
from tether.policy import parse_policy
from tether.runner import RunSpec, start_run

TOOLS = [ToolSpec("bash", "run", {"type": "object", "properties": {"command": {"type": "string"}},
                                  "required": ["command"]})]
HISTORY = [
    {"role": "system", "content": "sys"},
    {"role": "user", "content": "task"},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "name": "bash", "arguments": {"command": "ls"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "exit code 0\nfile"},
]


@pytest.fixture(autouse=True)
def no_keys(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")


def test_openai_round_trip_with_tool_calls():
    with api_server([openai_reply("thinking", [("c2", "bash", {"command": "pytest"})])]) as (url, seen):
        provider = make_provider("openai:gpt-4o-mini", base_url=f"{url}/v1")
        response = provider.complete(HISTORY, TOOLS, 256)
    assert response.content == "thinking"
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [("c2", "bash", {"command": "pytest"})]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (120, 30)
    sent = seen[0]["body"]
    assert seen[0]["path"] == "/v1/chat/completions"
    assert sent["messages"][2]["tool_calls"][0]["function"] == {"name": "bash", "arguments": '{"command": "ls"}'}
    assert sent["messages"][3] == {"role": "tool", "tool_call_id": "c1", "content": "exit code 0\nfile"}
    assert sent["tools"][0]["function"]["name"] == "bash" and sent["max_tokens"] == 256


def test_openai_text_actions_send_the_grammar_sample_retries_and_redraw_a_repeat():
    first = "FILE: raindrops.py\n```python\nx = 1\n```"
    replies = [openai_reply(first, model="qwen-local"), openai_reply(first, model="qwen-local"),
               openai_reply("```bash\npytest -q\n```", model="qwen-local")]
    task = [{"role": "system", "content": "sys"}, {"role": "user", "content": "Implement raindrops.py so that ..."}]
    with api_server(replies) as (url, seen):
        provider = make_provider("openai:qwen-local", base_url=f"{url}/v1", text_actions=True)
        assert provider.format_hint is not None  # a reply with no action gets the format back
        response = provider.complete(task, TOOLS, 256)
        history = [*task, {"role": "assistant", "content": first, "tool_calls": [c.as_dict() for c in
                                                                                  response.tool_calls]},
                   {"role": "tool", "tool_call_id": "call_0_0", "content": "The required checks fail"}]
        retry = provider.for_attempt(2).complete(history, TOOLS, 256)
    assert [(c.name, c.arguments["path"]) for c in response.tool_calls] == [("write_file", "raindrops.py")]
    assert retry.tool_calls[0].arguments == {"command": "pytest -q"}  # the repeated file was drawn again
    assert retry.model == "qwen-local" and (retry.usage.input_tokens, retry.usage.output_tokens) == (240, 60)
    bodies = [request["body"] for request in seen]
    assert "tools" not in bodies[0] and "FILE: shapes.py" in bodies[0]["messages"][0]["content"]
    assert 'root ::= file' in bodies[0]["grammar"] and '"raindrops.py"' in bodies[0]["grammar"]
    assert (bodies[0]["temperature"], bodies[0]["seed"]) == (0.0, 0)
    assert "root ::= bash | file | submit" in bodies[1]["grammar"]
    assert bodies[1]["temperature"] > 0 and bodies[1]["seed"] != bodies[2]["seed"]
    assert bodies[1]["messages"][-1] == {"role": "user", "content": "Result:\nThe required checks fail"}


def test_openai_attempts_after_the_first_ask_with_a_seed_of_their_own():
    with api_server([openai_reply("a"), openai_reply("b")]) as (url, seen):
        provider = make_provider("openai:gpt-4o-mini", base_url=f"{url}/v1")
        provider.complete(HISTORY, TOOLS, 64)
        provider.for_attempt(3).complete(HISTORY, TOOLS, 64)
    assert "seed" not in seen[0]["body"] and seen[1]["body"]["seed"] == 3


def test_openai_malformed_arguments_are_kept_for_the_guard():
    with api_server([openai_reply("", [("c3", "bash", '{"command": "ls"')])]) as (url, _):
        response = make_provider("openai:m", base_url=url).complete(HISTORY, TOOLS, 64)
    assert "_invalid_arguments" in response.tool_calls[0].arguments


@pytest.mark.parametrize("status, headers, transient, retry_after", [
    (429, {"retry-after": "7"}, True, 7.0),
    (503, {}, True, None),
    (400, {}, False, None),
    (401, {}, False, None),
])
def test_openai_errors_are_classified(status, headers, transient, retry_after):
    with api_server([(status, {"error": {"message": "nope", "type": "x"}}, headers)]) as (url, _):
        provider = make_provider("openai:m", base_url=url)
        with pytest.raises(ModelError) as caught:
            provider.complete(HISTORY, TOOLS, 64)
    assert isinstance(caught.value, TransientModelError) is transient
    if transient:
        assert caught.value.retry_after_s == retry_after


def test_openai_without_key_or_base_url_is_a_clear_error():
    with pytest.raises(ModelError, match="OPENAI_API_KEY"):
        make_provider("openai:gpt-4o")


def test_anthropic_round_trip_with_tool_results_folded_into_user_turns():
    with api_server([anthropic_reply("ok", [("tu2", "bash", {"command": "ls"})])]) as (url, seen):
        response = make_provider("anthropic:claude-haiku-4-5", base_url=url).complete(HISTORY, TOOLS, 128)
    assert response.tool_calls[0].arguments == {"command": "ls"} and response.content == "ok"
    body = seen[0]["body"]
    assert body["system"] == "sys"
    assert body["messages"][1]["content"][0] == {"type": "tool_use", "id": "c1", "name": "bash",
                                                 "input": {"command": "ls"}}
    assert body["messages"][2]["content"][0]["type"] == "tool_result"
    assert body["tools"][0]["input_schema"]["required"] == ["command"]


def test_anthropic_rate_limit_is_transient():
    with api_server([(429, {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
                      {"retry-after": "3"})]) as (url, _), pytest.raises(TransientModelError) as caught:
        make_provider("anthropic:claude-haiku-4-5", base_url=url).complete(HISTORY, TOOLS, 64)
    assert caught.value.retry_after_s == 3.0


def test_prices_are_offline_and_unknown_models_cost_nothing_known():
    assert price_usd("gpt-4o-mini", "openai", Usage(1_000_000, 0)) == pytest.approx(0.15)
    assert price_usd("no-such-model-xyz", "openai", Usage(1000, 1000)) is None


@pytest.mark.parametrize("provider", ["openai:gpt-4o-mini", "anthropic:claude-sonnet-4-5", "openai:gpt-4.1"])
def test_an_estimate_at_base_rates_is_the_exact_price_below_the_first_tier(provider: str):
    for usage in (Usage(1, 0), Usage(0, 7), Usage(12_345, 678), Usage(150_000, 8_000)):
        assert estimate_usd(provider, usage) == pytest.approx(cost_of(provider, usage), rel=1e-9)
    assert estimate_usd("openai:no-such-model-xyz", Usage(1000, 1000)) == 0.0
    assert estimate_usd("scripted:turns.json", Usage(1000, 1000)) == 0.0


def test_guarded_run_over_openai_retries_transient_errors_and_records_them(repo: Path, tmp_path: Path):
    replies = [
        (429, {"error": {"message": "slow down", "type": "rate_limit"}}, {"retry-after": "0"}),
        (500, {"error": {"message": "boom", "type": "server"}}, {}),
        openai_reply("", [("c1", "write_file", {"path": "raindrops.py", "content": FIX})]),
        openai_reply("", [("c2", "submit", {"summary": "fixed"})]),
    ]
    policy = parse_policy(CHECK + "[agent]\nretry_base_s = 0.01\n", Path("tether.toml"))
    ledger = Ledger(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with api_server(replies) as (url, _):
        summary = start_run(ledger, RunSpec("fix", repo, policy, model="openai:gpt-4o-mini", base_url=url))
    assert summary["status"] == "succeeded"
    errors = payloads(ledger, summary["run_id"], "model_error")
    assert [(e["attempt"], e["transient"]) for e in errors] == [(1, True), (2, True)]
    assert summary["model_errors"] == 2
    response = payloads(ledger, summary["run_id"], "model_response")[0]
    assert response["price_known"] and response["cost_usd"] > 0
    assert summary["usage"]["usd"] == pytest.approx(2 * price_usd("gpt-4o-mini", "openai", Usage(120, 30)))


def test_guarded_run_is_held_not_failed_when_the_model_keeps_failing(repo: Path, tmp_path: Path):
    replies = [(503, {"error": {"message": "down", "type": "server"}}, {})] * 3
    policy = parse_policy("[agent]\nmax_retries = 2\nretry_base_s = 0.01\n", Path("tether.toml"))
    ledger = Ledger(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with api_server(replies) as (url, _):
        summary = start_run(ledger, RunSpec("fix", repo, policy, model="openai:m", base_url=url))
    assert summary["status"] == "waiting" and "after 3 attempts" in summary["reason"]
    held = held_reason(ledger.events(summary["run_id"]))
    assert held is not None and held.rule == "model.transient" and (held.retry_at or 0) > time.time() - 1
    assert "run_finished" not in event_types(ledger, summary["run_id"])  # nothing delivered, resumable


@pytest.mark.parametrize("text", [
    'I will look.\n<tool_call>\n{"name": "bash", "arguments": {"command": "ls"}}\n</tool_call>',
    'I will look.\n{"name": "bash", "arguments": {"command": "ls"}}',  # bare, as llama.cpp's server returns it
    '```json\n{"name": "bash", // look first\n "arguments": {"command": "ls"}}\n```',
])
def test_openai_tool_call_written_as_text_is_parsed(text: str):
    with api_server([openai_reply(text)]) as (url, _):
        response = make_provider("openai:m", base_url=url).complete(HISTORY, TOOLS, 64)
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [("call_text_1", "bash", {"command": "ls"})]


def test_a_held_run_says_how_to_end_it_and_cancel_ends_it_with_its_work(repo: Path, tmp_path: Path):
    replies = [openai_reply("", [("c1", "write_file", {"path": "kept.txt", "content": "work\n"})])]
    replies += [(503, {"error": {"message": "down", "type": "server"}}, {})] * 3
    (repo / "tether.toml").write_text("[agent]\nmax_retries = 2\nretry_base_s = 0.01\n")

    def tether(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tether", *args], cwd=repo, capture_output=True, text=True)

    with api_server(replies) as (url, _):
        held = tether("run", "x", "--model", "openai:m", "--base-url", url, "--no-input")
    assert held.returncode == 5, held.stderr
    run_id = json.loads(tether("runs", "--json").stdout)[0]["run_id"]
    hint = " ".join(held.stderr.split())
    assert f"tether resume {run_id}" in hint and f"tether cancel {run_id}" in hint
    cancelled = tether("cancel", run_id, "--reason", "endpoint retired")
    assert cancelled.returncode == 0, cancelled.stderr
    summary = json.loads(tether("show", run_id, "--json").stdout)
    assert summary["status"] == "stopped" and "endpoint retired" in summary["reason"]
    assert git(repo, "show", f"{summary['branch']}:kept.txt") == "work\n"
    again = tether("cancel", run_id)
    assert again.returncode == 2 and "only a waiting, held or paused run" in again.stderr
