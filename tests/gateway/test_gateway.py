"""The model gateway on loopback, driven by the official anthropic and openai SDKs (streaming and
not), with a scripted upstream: what the agent gets, what is refused and why, what is recorded."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import anthropic
import openai
import pytest

from tests.conftest import script
from tests.gateway.serve import serving
from tests.models.fake_api import api_server, openai_reply
from tether.gateway.core import Gateway, issue_token, revoke_token
from tether.ledger import Ledger
from tether.ledger.fleet import Fleet
from tether.policy import parse_policy

BASH = {"tool_calls": [{"name": "Bash", "arguments": {"command": "ls -la"}}]}


def setup(ledger: Ledger, tmp_path: Path, turns: list[dict], policy: str = "", **grant) -> tuple[str, str]:
    model = script(tmp_path / "turns.json", turns)
    return issue_token(ledger, "alice", model, parse_policy(policy, Path("gw.toml")) if policy else None, **grant)


def post(url: str, data: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as failed:
        return failed.code, json.loads(failed.read())


def types(ledger: Ledger, run_id: str) -> list[str]:
    return [e.type for e in ledger.events(run_id)]


def test_anthropic_messages_plain_and_streamed_with_a_tool_call(ledger: Ledger, tmp_path: Path):
    token, run_id = setup(ledger, tmp_path, [{"content": "hi from upstream", "usage": {"input_tokens": 9,
                                                                                        "output_tokens": 4}}, BASH])
    with serving(Gateway(ledger)) as url:
        client = anthropic.Anthropic(base_url=url, api_key=token, max_retries=0)
        reply = client.messages.create(model="claude-x", max_tokens=100, system="be brief",
                                       messages=[{"role": "user", "content": "hello"}])
        assert reply.content[0].text == "hi from upstream" and reply.stop_reason == "end_turn"
        assert (reply.usage.input_tokens, reply.usage.output_tokens) == (9, 4)
        history = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi from upstream"},
                   {"role": "user", "content": "list files"}]
        with client.messages.stream(model="claude-x", max_tokens=100, messages=history) as stream:
            final = stream.get_final_message()
        (use,) = [block for block in final.content if block.type == "tool_use"]
        assert (use.name, use.input, final.stop_reason) == ("Bash", {"command": "ls -la"}, "tool_use")
    assert types(ledger, run_id) == ["run_started", "model_request", "model_response", "model_request",
                                     "model_response"]
    recorded = ledger.events(run_id)[-1].data
    assert recorded.tool_calls[0].name == "Bash" and ledger.verify(run_id).ok


@pytest.mark.parametrize("streamed", [False, True])
def test_openai_chat_completions(ledger: Ledger, tmp_path: Path, streamed: bool):
    token, run_id = setup(ledger, tmp_path, [BASH])
    with serving(Gateway(ledger)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0)
        ask = {"model": "m", "messages": [{"role": "user", "content": "list"}],
               "tools": [{"type": "function", "function": {"name": "Bash", "parameters": {"type": "object"}}}]}
        if streamed:
            chunks = list(client.chat.completions.create(**ask, stream=True))
            call = next(c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls)
            assert chunks[-1].choices[0].finish_reason == "tool_calls"
        else:
            call = client.chat.completions.create(**ask).choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == ("Bash", {"command": "ls -la"})
    assert ledger.verify(run_id).ok


@pytest.mark.parametrize("streamed", [False, True])
def test_openai_responses(ledger: Ledger, tmp_path: Path, streamed: bool):
    token, run_id = setup(ledger, tmp_path, [{"content": "done", "usage": {"input_tokens": 5, "output_tokens": 2}}])
    with serving(Gateway(ledger)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0)
        if streamed:
            events = list(client.responses.create(model="m", input="hi", instructions="brief", stream=True))
            assert events[0].type == "response.created" and events[-1].type == "response.completed"
            response = events[-1].response
        else:
            response = client.responses.create(model="m", input="hi")
    assert response.output_text == "done" and response.usage.total_tokens == 7
    assert types(ledger, run_id)[-1] == "model_response"


def test_a_budget_reached_is_refused_in_the_clients_format_and_recorded(ledger: Ledger, tmp_path: Path):
    token, run_id = setup(ledger, tmp_path, [{"content": "one"}, {"content": "two"}], "[budget]\nmax_steps = 1\n")
    with serving(Gateway(ledger)) as url:
        client = anthropic.Anthropic(base_url=url, api_key=token, max_retries=0)
        client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "a"}])
        with pytest.raises(anthropic.APIStatusError, match=r"Tether: budget\.max_steps: step budget of 1 used") as no:
            client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "b"}])
        assert no.value.status_code == 402 and no.value.body["error"]["type"] == "billing_error"  # shown, not retried
        chat = openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0)
        with pytest.raises(openai.BadRequestError, match=r"budget\.max_steps"):
            chat.chat.completions.create(model="m", messages=[{"role": "user", "content": "c"}])
    decisions = [e.data for e in ledger.events(run_id) if e.type == "policy_decision"]
    assert [(d.verdict, d.rule) for d in decisions] == [("stop", "budget.max_steps")] * 2
    assert types(ledger, run_id).count("model_request") == 1  # the refused calls never went upstream


def test_a_developers_daily_usd_and_the_kill_switch(ledger: Ledger, tmp_path: Path):
    priced = {"content": "x", "cost_usd": 0.03}
    token, run_id = setup(ledger, tmp_path, [priced, priced, priced], max_usd_per_day=0.05)
    with serving(Gateway(ledger)) as url:
        client = anthropic.Anthropic(base_url=url, api_key=token, max_retries=0)
        ask = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "a"}]}
        client.messages.create(**ask)
        client.messages.create(**ask)  # 0.03 spent: the next may still start
        with pytest.raises(anthropic.APIStatusError, match=r"gateway.max_usd_per_day: alice spent \$0.0600"):
            client.messages.create(**ask)
        other, _ = setup(ledger, tmp_path, [priced])
        Fleet(ledger).set_switch("all", "incident 42", "oncall")
        with pytest.raises(anthropic.APIStatusError, match=r"fleet\.kill_switch.*incident 42"):
            anthropic.Anthropic(base_url=url, api_key=other, max_retries=0).messages.create(**ask)
    assert ledger.verify(run_id).ok



def test_a_kill_switch_stops_a_running_session_within_its_staleness(ledger: Ledger, tmp_path: Path):
    from tether.gateway.core import SWITCH_STALENESS_S

    token, run_id = setup(ledger, tmp_path, [{"content": "x"}] * 4)
    ask = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "a"}]}
    with serving(Gateway(ledger)) as url:
        client = anthropic.Anthropic(base_url=url, api_key=token, max_retries=0)
        client.messages.create(**ask)  # the switch was read off
        Fleet(ledger).set_switch("all", "incident 43", "oncall")
        time.sleep(SWITCH_STALENESS_S + 0.05)
        with pytest.raises(anthropic.APIStatusError, match=r"fleet\.kill_switch.*incident 43"):
            client.messages.create(**ask)
        Fleet(ledger).release_switch("all", "oncall")
        client.messages.create(**ask)  # released: read again at once, since it was on
    assert [e.type for e in ledger.events(run_id)].count("model_response") == 2

def test_bad_tokens_bodies_and_upstreams_get_clear_errors_and_the_record_stays_whole(ledger: Ledger,
                                                                                        tmp_path: Path):
    token, run_id = setup(ledger, tmp_path, [{"content": "only turn"}])
    gateway = Gateway(ledger)
    with serving(gateway) as url:
        for key in ("sk-not-ours", "tg-forged"):
            with pytest.raises(anthropic.AuthenticationError, match="unknown or revoked"):
                anthropic.Anthropic(base_url=url, api_key=key, max_retries=0).messages.create(
                    model="m", max_tokens=5, messages=[{"role": "user", "content": "a"}])
        status, body = post(f"{url}/v1/messages", b"{not json", {"x-api-key": token})
        assert status == 400 and body["error"]["type"] == "invalid_request_error"
        status, body = post(f"{url}/v1/chat/completions", json.dumps({"model": "m", "messages": "hi"}).encode(),
                            {"authorization": f"Bearer {token}"})
        assert status == 400 and "messages" in body["error"]["message"]
        client = anthropic.Anthropic(base_url=url, api_key=token, max_retries=0)
        client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "a"}])
        history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "only turn"},
                   {"role": "user", "content": "more"}]
        with pytest.raises(anthropic.APIStatusError, match=r"upstream model failed.*ran out of turns") as failed:
            client.messages.create(model="m", max_tokens=5, messages=history)
        assert failed.value.status_code == 502
        assert revoke_token(ledger, token)
        time.sleep(1.1)  # a revocation takes effect within a second
        with pytest.raises(anthropic.AuthenticationError):
            client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "a"}])
    assert types(ledger, run_id)[-1] == "model_error" and ledger.verify(run_id).ok
    assert token not in json.dumps([e.payload for e in ledger.events(run_id)])


def test_the_cli_issues_a_token_serves_it_and_revokes_it(tmp_path: Path, sqlite_url: str):
    import socket
    import subprocess
    import sys

    tether = [sys.executable, "-m", "tether", "gateway"]
    bad = subprocess.run([*tether, "token", "--user", "al", "--upstream", "gpt-4o", "--db", sqlite_url],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "model spec 'gpt-4o'" in bad.stderr
    model = script(tmp_path / "t.json", [{"content": "served"}])
    issued = subprocess.run([*tether, "token", "--user", "al", "--upstream", model, "--db", sqlite_url, "--json"],
                            capture_output=True, text=True)
    assert issued.returncode == 0, issued.stderr
    token = json.loads(issued.stdout)["token"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([*tether, "serve", "--port", str(port), "--db", sqlite_url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key=token, max_retries=4)
        reply = client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "a"}])
        assert reply.content[0].text == "served"
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert subprocess.run([*tether, "revoke", token, "--db", sqlite_url]).returncode == 0
    assert subprocess.run([*tether, "revoke", token + "x", "--db", sqlite_url], capture_output=True).returncode == 2


def hook(url: str, token: str, phase: str, event: bytes) -> subprocess.CompletedProcess[str]:
    import os
    import sys

    from tether.gateway.agent_tools import claude_code_settings

    env = {**os.environ, "TETHER_GATEWAY_URL": url, "TETHER_GATEWAY_TOKEN": token}
    command = claude_code_settings(sys.executable)["hooks"]["PreToolUse"][0]["hooks"][0]["command"].split(" ")
    return subprocess.run([*command[:-1], phase], input=event.decode(), env=env, capture_output=True, text=True,
                          timeout=30)


def test_the_hook_fails_closed_and_refuses_what_it_cannot_judge(ledger: Ledger, tmp_path: Path):
    token, run_id = setup(ledger, tmp_path, [{"content": "x"}])
    event = {"tool_name": "mcp__github__merge_pr", "tool_input": {"pr": 1}, "tool_use_id": "t1", "cwd": str(tmp_path)}
    with serving(Gateway(ledger)) as url:
        answer = hook(url, token, "pre", json.dumps(event).encode())
        decision = json.loads(answer.stdout)["hookSpecificOutput"]
        assert decision["permissionDecision"] == "deny" and "tools.unknown" in decision["permissionDecisionReason"]
        allowed = hook(url, token, "pre", json.dumps(dict(event, tool_name="Read", tool_input={
            "file_path": str(tmp_path / "a.py")}, tool_use_id="t2")).encode())
        assert json.loads(allowed.stdout)["hookSpecificOutput"]["permissionDecision"] == "allow"
        for bad in (b"{not json", b"[]", json.dumps({"tool_name": "Bash"}).encode()):
            refused = hook(url, token, "pre", bad)
            assert refused.returncode == 2 and "blocked" in refused.stderr and "bad hook event" in refused.stderr
        assert hook(url, "tg-forged", "pre", json.dumps(event).encode()).returncode == 2
        status, _ = post(f"{url}/tether/hooks/claude-code/pre", json.dumps(event).encode(), {"x-api-key": "tg-x"})
        assert status == 401
    gone = hook(url, token, "pre", json.dumps(event).encode())  # the gateway is down: blocked, not allowed
    assert gone.returncode == 2 and "could not judge" in gone.stderr
    assert [e.type for e in ledger.events(run_id)][1:] == ["tool_call", "policy_decision", "tool_result", "tool_call"]
    assert ledger.verify(run_id).ok



def test_the_http_hook_answers_in_claude_codes_protocol_and_refuses_what_it_cannot_judge(ledger: Ledger,
                                                                                         tmp_path: Path):
    token, run_id = setup(ledger, tmp_path, [{"content": "x"}])
    url_path = "/tether/hooks/claude-code"
    event = {"hook_event_name": "PreToolUse", "tool_name": "mcp__github__merge_pr", "tool_input": {"pr": 1},
             "tool_use_id": "t1", "cwd": str(tmp_path)}

    def ask(body: bytes, key: str = token) -> dict:
        status, answer = post(f"{url}{url_path}", body, {"x-api-key": key})
        assert status == 200  # Claude Code reads a verdict only from a 2xx
        return answer

    def verdict(answer: dict) -> tuple[str, str]:
        said = answer["hookSpecificOutput"]
        return said["permissionDecision"], said["permissionDecisionReason"]

    with serving(Gateway(ledger)) as url:
        assert verdict(ask(json.dumps(event).encode()))[0] == "deny"
        read = dict(event, tool_name="Read", tool_input={"file_path": str(tmp_path / "a.py")}, tool_use_id="t2")
        assert verdict(ask(json.dumps(read).encode())) == ("allow", "Tether: allowed")
        assert ask(json.dumps(dict(read, hook_event_name="PostToolUse", tool_response="x")).encode()) == {}
        for bad in (b"{not json", b"[]", json.dumps({"tool_name": "Bash"}).encode(),
                    json.dumps(dict(event, hook_event_name="Stop")).encode(),
                    json.dumps(dict(event, tool_name=None)).encode()):
            decision, reason = verdict(ask(bad))
            assert decision == "deny" and "bad hook event" in reason, reason
        decision, reason = verdict(ask(json.dumps(event).encode(), key="tg-forged"))
        assert decision == "deny" and "gateway.auth" in reason
        decision, _ = verdict(ask(json.dumps(event).encode(), key=""))
        assert decision == "deny"
    assert [e.type for e in ledger.events(run_id)][1:] == ["tool_call", "policy_decision", "tool_result",
                                                           "tool_call", "tool_result"]
    assert ledger.verify(run_id).ok

def test_a_hung_upstream_is_waited_for_only_until_the_runs_wall_budget_ends(ledger: Ledger, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch):
    policy = parse_policy("[budget]\nmax_wall_s = 3\n[agent]\nmax_retries = 2\nretry_base_s = 5\n", Path("gw.toml"))
    with api_server([openai_reply("late")] * 3, delay_s=40) as (upstream, received):
        monkeypatch.setenv("OPENAI_BASE_URL", upstream)
        token, run_id = issue_token(ledger, "alice", "openai:m", policy)
        with serving(Gateway(ledger)) as url:
            client = anthropic.Anthropic(base_url=url, api_key=token, max_retries=0)
            started = time.monotonic()
            with pytest.raises(anthropic.APIStatusError, match="upstream model failed") as failed:
                client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "a"}])
            assert time.monotonic() - started < 15  # not the upstream's 40 s, nor the 5 s back-offs
    assert failed.value.status_code == 502 and received
    errors = [e.data for e in ledger.events(run_id) if e.type == "model_error"]
    assert len(errors) == 3 and all(e.transient for e in errors), errors
    assert ledger.verify(run_id).ok


def test_gateway_hooks_prints_http_hooks_for_claude_code_and_refuses_what_cannot_take_them():
    from typer.testing import CliRunner

    from tether.cli import app

    runner = CliRunner()
    printed = runner.invoke(app, ["gateway", "hooks", "claude-code", "--http", "http://127.0.0.1:8787/"])
    assert printed.exit_code == 0, printed.output
    settings = json.loads(printed.stdout)
    (pre,) = settings["hooks"]["PreToolUse"][0]["hooks"]
    assert (pre["type"], pre["url"], pre["onFailure"]) == ("http", "http://127.0.0.1:8787/tether/hooks/claude-code",
                                                          "block")
    assert pre["headers"] == {"x-api-key": "${TETHER_GATEWAY_TOKEN}"}
    assert pre["allowedEnvVars"] == ["TETHER_GATEWAY_TOKEN"]
    assert settings["hooks"]["PostToolUse"][0]["hooks"] == [pre]
    codex = runner.invoke(app, ["gateway", "hooks", "codex", "--http", "http://127.0.0.1:8787"])
    assert codex.exit_code == 2 and "only Claude Code takes hooks over HTTP" in codex.output
    bad = runner.invoke(app, ["gateway", "hooks", "claude-code", "--http", "127.0.0.1:8787"])
    assert bad.exit_code == 2 and "is not a URL" in bad.output
