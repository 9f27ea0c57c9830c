"""The real Claude Code and Codex CLIs (installed from npm by scripts/setup) talking to the model
gateway with a scripted upstream: their replies come through, a refusal stops them with Tether's
reason, and every request is in the run's log."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import script
from tests.gateway.serve import serving
from tether.gateway.core import Gateway, issue_token
from tether.ledger import Ledger
from tether.policy import parse_policy

AGENTS = Path(os.environ.get("TETHER_AGENTS_DIR", Path(__file__).parents[2] / ".agents")) / "node_modules" / ".bin"
ONE_STEP = parse_policy("[budget]\nmax_steps = 1\n", Path("gw.toml"))


def binary(name: str) -> Path:
    path = AGENTS / name
    if not path.exists():
        pytest.skip(f"{name} is not installed at {path}: scripts/setup installs it from npm (was npm reachable?)")
    return path


def claude(url: str, token: str, home: Path, prompt: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": token, "HOME": str(home),
           "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    return subprocess.run([str(binary("claude")), "-p", prompt, "--output-format", "json"], env=env, cwd=home,
                          capture_output=True, text=True, timeout=120)


def codex(url: str, token: str, home: Path, prompt: str) -> subprocess.CompletedProcess[str]:
    (home / "config.toml").write_text(
        'model = "gateway-model"\nmodel_provider = "tether"\n[model_providers.tether]\nname = "tether"\n'
        f'base_url = "{url}/v1"\nenv_key = "TETHER_TOKEN"\nwire_api = "responses"\n')
    env = {**os.environ, "CODEX_HOME": str(home), "TETHER_TOKEN": token, "HOME": str(home)}
    return subprocess.run([str(binary("codex")), "exec", "--skip-git-repo-check", prompt], env=env, cwd=home,
                          capture_output=True, text=True, timeout=180)


def test_claude_code_gets_the_upstreams_reply_then_stops_at_the_budget(ledger: Ledger, tmp_path: Path):
    binary("claude")
    turns = script(tmp_path / "t.json", [{"content": "hello through tether", "usage": {"input_tokens": 40,
                                                                                        "output_tokens": 5}}])
    token, run_id = issue_token(ledger, "alice", turns, ONE_STEP)
    with serving(Gateway(ledger)) as url:
        first = claude(url, token, tmp_path, "say hi")
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["result"] == "hello through tether"
        second = claude(url, token, tmp_path, "say hi again")
    assert second.returncode != 0
    assert "Tether: budget.max_steps: step budget of 1 used" in json.loads(second.stdout)["result"]
    events = ledger.events(run_id)
    assert [e.type for e in events] == ["run_started", "model_request", "model_response", "policy_decision"]
    assert events[2].data.usage.input_tokens == 40 and ledger.verify(run_id).ok


def test_codex_gets_the_upstreams_reply_then_stops_at_the_budget(ledger: Ledger, tmp_path: Path):
    binary("codex")
    turns = script(tmp_path / "t.json", [{"content": "hello through tether"}])
    token, run_id = issue_token(ledger, "bob", turns, ONE_STEP)
    with serving(Gateway(ledger)) as url:
        first = codex(url, token, tmp_path, "say hi")
        assert first.returncode == 0, first.stderr
        assert "hello through tether" in first.stdout
        second = codex(url, token, tmp_path, "say hi again")
    assert second.returncode != 0 and "Tether: budget.max_steps" in second.stderr
    assert [e.type for e in ledger.events(run_id)] == ["run_started", "model_request", "model_response",
                                                       "policy_decision"]  # it did not retry the refusal
    assert ledger.verify(run_id).ok


def test_claude_codes_tool_calls_pass_the_guard_through_its_hooks(ledger: Ledger, tmp_path: Path):
    import sys

    from tether.gateway.agent_tools import claude_code_settings

    binary("claude")
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("original\n")
    turns = script(tmp_path / "t.json", [
        {"tool_calls": [{"name": "Bash", "arguments": {"command": "touch pwned.txt", "description": "try"}}]},
        {"tool_calls": [{"name": "Write", "arguments": {"file_path": str(tmp_path / "outside.txt"), "content": "x"}}]},
        {"tool_calls": [{"name": "WebFetch", "arguments": {"url": "https://example.com", "prompt": "read"}}]},
        {"tool_calls": [{"name": "Bash", "arguments": {"command": "echo ok > allowed.txt", "description": "ok"}}]},
        {"content": "done"}])
    policy = parse_policy('[commands]\ndeny = ["touch"]\n', Path("gw.toml"))
    token, run_id = issue_token(ledger, "alice", turns, policy)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(claude_code_settings(sys.executable)))
    home = tmp_path / "home"
    home.mkdir()
    with serving(Gateway(ledger)) as url:
        env = {**os.environ, "ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": token, "HOME": str(home),
               "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
        done = subprocess.run([str(binary("claude")), "-p", "do it", "--output-format", "json", "--settings",
                               str(settings)], env=env, cwd=work, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert not (work / "pwned.txt").exists() and not (tmp_path / "outside.txt").exists()  # never executed
    assert (work / "allowed.txt").read_text() == "ok\n"
    events = [e.data for e in ledger.events(run_id)]
    assert [(d.rule, d.verdict) for d in events if d.type == "policy_decision"] == [
        ("commands.deny", "deny"), ("paths.outside", "deny"), ("commands.network", "deny")]
    results = [(d.call_id, d.executed) for d in events if d.type == "tool_result"]
    assert [executed for _, executed in results] == [False, False, False, True]
    assert [d.name for d in events if d.type == "tool_call"] == ["Bash", "Write", "WebFetch", "Bash"]
    assert ledger.verify(run_id).ok
