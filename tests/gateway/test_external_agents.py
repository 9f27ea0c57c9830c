"""The real Claude Code and Codex CLIs (installed from npm by scripts/setup) talking to the model
gateway with a scripted upstream: their replies come through, a refusal stops them with Tether's
reason, and every request is in the run's log."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import git, script, token_for
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


def codex(url: str, token: str, home: Path, prompt: str, *flags: str) -> subprocess.CompletedProcess[str]:
    (home / "config.toml").write_text(
        'model = "gateway-model"\nmodel_provider = "tether"\n[model_providers.tether]\nname = "tether"\n'
        f'base_url = "{url}/v1"\nenv_key = "TETHER_TOKEN"\nwire_api = "responses"\n')
    env = {**os.environ, "CODEX_HOME": str(home), "TETHER_TOKEN": token, "HOME": str(home)}
    return subprocess.run([str(binary("codex")), "exec", "--skip-git-repo-check", *flags, prompt], env=env, cwd=home,
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


def hook_settings(kind: str, url: str) -> dict:
    import sys

    from tether.gateway.agent_tools import claude_code_http_settings, claude_code_settings

    return claude_code_http_settings(url) if kind == "http" else claude_code_settings(sys.executable)


@pytest.mark.parametrize("kind", ["command", "http"])
def test_claude_codes_tool_calls_pass_the_guard_through_its_hooks(ledger: Ledger, tmp_path: Path, kind: str):
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
    home = tmp_path / "home"
    home.mkdir()
    with serving(Gateway(ledger)) as url:
        settings.write_text(json.dumps(hook_settings(kind, url)))
        env = {**os.environ, "ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": token, "TETHER_GATEWAY_TOKEN": token,
               "HOME": str(home), "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
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



def claude_with_hooks(url: str, token: str, tmp_path: Path, settings: dict) -> subprocess.CompletedProcess[str]:
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": token, "TETHER_GATEWAY_TOKEN": token,
           "HOME": str(home), "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    return subprocess.run([str(binary("claude")), "-p", "do it", "--output-format", "json", "--settings",
                           str(tmp_path / "settings.json")], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=180)


@pytest.mark.parametrize("hook_url", ["dead", "error", "not-json", "wrong-token"])
def test_an_http_hook_that_cannot_judge_blocks_the_call(ledger: Ledger, tmp_path: Path, hook_url: str):
    """Fails closed: no answer, a 500, an answer that is not a verdict, or a token that is not the
    run's, and the tool call does not run."""
    import http.server
    import threading

    from tether.gateway.agent_tools import claude_code_http_settings

    binary("claude")
    turns = script(tmp_path / "t.json", [bash_turn("touch ran.txt"), {"content": "done"}])
    token, run_id = issue_token(ledger, "alice", turns)

    class Broken(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            body = b"<html>oops</html>" if hook_url == "not-json" else b'{"error": "down"}'
            self.send_response(500 if hook_url == "error" else 200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    broken = http.server.HTTPServer(("127.0.0.1", 0), Broken)
    threading.Thread(target=broken.serve_forever, daemon=True).start()
    dead = socket.create_server(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()
    try:
        with serving(Gateway(ledger)) as url:
            settings = claude_code_http_settings(
                url if hook_url == "wrong-token" else f"http://127.0.0.1:{dead_port}" if hook_url == "dead"
                else f"http://127.0.0.1:{broken.server_address[1]}",
                token_env="NOT_THE_TOKEN" if hook_url == "wrong-token" else "TETHER_GATEWAY_TOKEN")
            # A developer's own allow rule: without the hook's block the call would run.
            done = claude_with_hooks(url, token, tmp_path, {**settings, "permissions": {"allow": ["Bash"]}})
    finally:
        broken.shutdown()
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "ran.txt").exists()
    assert [e.type for e in ledger.events(run_id)].count("tool_result") == 0  # the gateway ran nothing either


def test_an_http_hook_refusal_reaches_the_model_with_its_reason(ledger: Ledger, tmp_path: Path):
    from tether.gateway.agent_tools import claude_code_http_settings

    binary("claude")
    turns = script(tmp_path / "t.json", [bash_turn("touch ran.txt"), {"content": "done"}])
    policy = parse_policy('[commands]\ndeny = ["touch"]\n', Path("gw.toml"))
    token, run_id = issue_token(ledger, "alice", turns, policy)
    with serving(Gateway(ledger)) as url:
        done = claude_with_hooks(url, token, tmp_path, claude_code_http_settings(url))
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "ran.txt").exists()
    transcript = "".join(path.read_text() for path in (tmp_path / "home").rglob("*.jsonl"))
    assert "Tether: commands.deny" in transcript  # what the model read as the call's result
    decisions = [e.data for e in ledger.events(run_id) if e.type == "policy_decision"]
    assert [(d.rule, d.verdict) for d in decisions] == [("commands.deny", "deny")]

FIX = ("def convert(number):\n    sounds = ((3, 'Pling'), (5, 'Plang'), (7, 'Plong'))\n"
       "    return ''.join(s for d, s in sounds if number % d == 0) or str(number)\n")
GUARDED = """
[[checks]]
name = "tests"
command = "python -m pytest -q -p no:cacheprovider raindrops_test.py"
[commands]
deny = ["curl", "touch"]
[writes]
deny = ["secrets/**"]
[ownership.protected]
"raindrops_test.py" = ["@qa"]
"""


def bash_turn(command: str) -> dict:
    return {"tool_calls": [{"name": "Bash", "arguments": {"command": command, "description": "step"}}]}


def tether_run(repo: Path, turns: Path, *extra: str) -> tuple[int, dict, str]:
    import sys

    done = subprocess.run([sys.executable, "-m", "tether", "run", "Make the tests pass", "--agent", "claude-code",
                           "--model", f"scripted:{turns}", "--json", *extra], cwd=repo, capture_output=True,
                          text=True, timeout=300)
    return done.returncode, json.loads(done.stdout), done.stderr


def test_tether_run_agent_claude_code_in_the_sandbox_guarded_checked_and_delivered(repo: Path, tmp_path: Path):
    binary("claude")
    (repo / "tether.toml").write_text(GUARDED)
    listener = socket.create_server(("127.0.0.1", 0))  # a service on the host: the agent must not reach it
    port = listener.getsockname()[1]
    turns = tmp_path / "turns.json"
    turns.write_text(json.dumps([
        bash_turn("touch pwned.txt"),  # a denied command: never runs
        bash_turn("mkdir -p secrets && echo key > secrets/k.txt"),  # runs, then is measured and rolled back
        bash_turn("env > seen-env.txt"),
        {"tool_calls": [{"name": "Write", "arguments": {  # its own settings: hooks off for the next run
            "file_path": ".claude/settings.local.json", "content": '{"disableAllHooks": true}'}}]},
        bash_turn(f"(echo hi > /dev/tcp/127.0.0.1/{port}) > net.txt 2>&1; echo exit=$? >> net.txt"),
        {"tool_calls": [{"name": "Write", "arguments": {"file_path": "raindrops.py", "content": FIX}}]},
        {"content": "Fixed."},
    ]))
    code, summary, stderr = tether_run(repo, turns)
    listener.close()
    assert code == 0 and summary["status"] == "succeeded", stderr
    branch = summary["branch"]
    delivered = git(repo, "ls-tree", "-r", "--name-only", branch).split()
    assert "pwned.txt" not in delivered and not any(p.startswith("secrets/") for p in delivered)
    assert git(repo, "show", f"{branch}:raindrops.py") == FIX
    assert git(repo, "show", f"{branch}:raindrops_test.py") == git(repo, "show", "HEAD:raindrops_test.py")
    seen_env = git(repo, "show", f"{branch}:seen-env.txt")
    assert "ANTHROPIC_API_KEY=tg-" in seen_env and "OPENAI" not in seen_env  # only the run's token
    assert "exit=1" in git(repo, "show", f"{branch}:net.txt")  # the host's loopback is not the sandbox's
    rules = [d["rule"] for d in summary["denials"]]
    assert rules == ["commands.deny", "writes.deny", "writes.policy"]
    assert not any(p.startswith(".claude/") or p == ".mcp.json" for p in delivered)
    assert summary["checks"][0]["passed"] and summary["usage"]["steps"] == 7
    import sys

    verified = subprocess.run([sys.executable, "-m", "tether", "verify", summary["run_id"]], cwd=repo)
    assert verified.returncode == 0


def test_a_budget_reached_mid_run_stops_the_agent_and_keeps_its_work(repo: Path, tmp_path: Path):
    binary("claude")
    (repo / "tether.toml").write_text(GUARDED + "[budget]\nmax_steps = 2\n")
    turns = tmp_path / "turns.json"
    turns.write_text(json.dumps([bash_turn("echo one > one.txt"), bash_turn("echo two > two.txt"),
                                 bash_turn("echo three > three.txt")]))
    code, summary, stderr = tether_run(repo, turns)
    assert code == 3 and summary["status"] == "stopped", stderr
    assert summary["reason"] == "step budget of 2 used"
    assert [d["rule"] for d in summary["denials"]] == ["budget.max_steps"]
    delivered = git(repo, "ls-tree", "-r", "--name-only", summary["branch"]).split()
    assert "one.txt" in delivered and "two.txt" in delivered and "three.txt" not in delivered


def test_the_kill_switch_from_another_process_stops_the_agent(repo: Path, tmp_path: Path):
    import sys
    import time

    binary("claude")
    (repo / "tether.toml").write_text(GUARDED)
    turns = tmp_path / "turns.json"
    turns.write_text(json.dumps([bash_turn("echo one > one.txt && sleep 4"), bash_turn("echo two > two.txt"),
                                 {"content": "done"}]))
    agent = subprocess.Popen([sys.executable, "-m", "tether", "run", "x", "--agent", "claude-code", "--model",
                              f"scripted:{turns}", "--json"], cwd=repo, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list((repo / ".tether" / "worktrees").glob("*/one.txt")):
        assert time.time() < deadline and agent.poll() is None, agent.stderr.read() if agent.stderr else ""
        time.sleep(0.1)
    braked = subprocess.run([sys.executable, "-m", "tether", "brake", "--all", "--reason", "incident 7"], cwd=repo,
                            capture_output=True, text=True)
    assert braked.returncode == 0, braked.stderr
    stdout, stderr = agent.communicate(timeout=120)
    summary = json.loads(stdout)
    assert agent.returncode == 3 and summary["status"] == "stopped", stderr
    assert "incident 7" in summary["reason"]
    delivered = git(repo, "ls-tree", "-r", "--name-only", summary["branch"]).split()
    assert "one.txt" in delivered and "two.txt" not in delivered


def test_a_write_to_an_owned_file_waits_for_its_owner_and_the_agent_goes_on(repo: Path, tmp_path: Path):
    import sys

    binary("claude")
    (repo / "tether.toml").write_text(GUARDED.replace('"raindrops_test.py" = ["@qa"]', '"raindrops.py" = ["alice"]'))
    turns = tmp_path / "turns.json"
    turns.write_text(json.dumps([
        {"tool_calls": [{"name": "Write", "arguments": {"file_path": "raindrops.py", "content": FIX}}]},
        {"content": "Fixed."}]))
    code, summary, stderr = tether_run(repo, turns)
    assert code == 4 and summary["status"] == "awaiting_approval", stderr
    (request,) = summary["approvals"]
    assert request["owners"] == ["alice"] and "+    sounds = " in request["diff"]
    assert git(repo, "show", f"{summary['branch']}:raindrops.py") == git(repo, "show", "HEAD:raindrops.py")
    tether = [sys.executable, "-m", "tether"]
    refused = subprocess.run([*tether, "approve", summary["run_id"]], cwd=repo, capture_output=True, text=True,
                             env={**os.environ, "TETHER_TOKEN": token_for(repo, "mallory")})
    assert refused.returncode == 2 and "may not approve" in refused.stderr
    approved = subprocess.run([*tether, "approve", summary["run_id"], "--json"], cwd=repo, capture_output=True,
                              text=True, timeout=300, env={**os.environ, "TETHER_TOKEN": token_for(repo, "alice")})
    done = json.loads(approved.stdout)
    assert approved.returncode == 0 and done["status"] == "succeeded", approved.stderr
    assert git(repo, "show", f"{done['branch']}:raindrops.py") == FIX
    assert done["approvals"][0]["decision"] == "approved" and done["approvals"][0]["by"] == "alice"
    assert subprocess.run([*tether, "verify", done["run_id"]], cwd=repo).returncode == 0


def test_an_agents_run_replays_identical_and_another_policy_shows_where_it_differs(repo: Path, tmp_path: Path):
    import sys

    binary("claude")
    (repo / "tether.toml").write_text(GUARDED)
    turns = tmp_path / "turns.json"
    turns.write_text(json.dumps([
        bash_turn("echo checked > notes.txt"),
        {"tool_calls": [{"name": "Write", "arguments": {"file_path": "raindrops.py", "content": FIX}}]},
        {"content": "Fixed."}]))
    code, summary, stderr = tether_run(repo, turns)
    assert code == 0, stderr
    tether = [sys.executable, "-m", "tether", "replay", summary["run_id"], "--json"]
    same = subprocess.run(tether, cwd=repo, capture_output=True, text=True, timeout=300)
    report = json.loads(same.stdout)
    assert same.returncode == 0 and report["identical"] and report["steps_compared"] == 2, same.stderr
    stricter = tmp_path / "stricter.toml"
    stricter.write_text(GUARDED.replace('deny = ["curl", "touch"]', 'deny = ["curl", "touch", "echo"]'))
    other = subprocess.run([*tether, "--against-policy", str(stricter)], cwd=repo, capture_output=True, text=True,
                           timeout=300)
    report = json.loads(other.stdout)
    assert not report["identical"]
    first = report["divergences"][0]
    assert first["field"] == "decisions" and first["replayed"] == ["deny commands.deny"]
