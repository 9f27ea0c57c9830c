"""`tether run --agent codex` and `--agent command:CLI` end to end: the real Codex binary (and a small
CLI that only knows an OpenAI base URL) in the run's sandbox, a scripted upstream behind the run's
gateway. What is checked is what happened in the repository and the log, from outside the agent."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import git, token_for
from tests.gateway.test_external_agents import FIX, GUARDED, binary

TETHER = [sys.executable, "-m", "tether"]
PATCH = ("*** Begin Patch\n*** Update File: raindrops.py\n@@\n-def convert(number):\n-    pass\n"
         + "".join(f"+{line}\n" for line in FIX.splitlines()) + "*** End Patch")


def shell(command: str) -> dict:
    """A turn in which the model calls Codex's shell tool."""
    return {"tool_calls": [{"name": "exec_command", "arguments": {"cmd": command}}]}


def patch_turn(patch: str = PATCH) -> dict:
    """Codex applies a patch through its shell tool, as its models are taught to."""
    return shell(f"apply_patch <<'EOF'\n{patch}\nEOF")


def tether_run(repo: Path, turns: list[dict], tmp_path: Path, agent: str = "codex") -> tuple[int, dict, str]:
    script = tmp_path / "turns.json"
    script.write_text(json.dumps(turns))
    done = subprocess.run([*TETHER, "run", "Make the tests pass", "--agent", agent, "--model", f"scripted:{script}",
                           "--json"], cwd=repo, capture_output=True, text=True, timeout=300)
    return done.returncode, json.loads(done.stdout or "{}"), done.stderr


def delivered(repo: Path, summary: dict) -> list[str]:
    return git(repo, "ls-tree", "-r", "--name-only", summary["branch"]).split()


def test_codex_in_the_sandbox_guarded_by_its_hooks_checked_and_delivered(repo: Path, tmp_path: Path):
    binary("codex")
    (repo / "tether.toml").write_text(GUARDED)
    listener = socket.create_server(("127.0.0.1", 0))  # a service on the host: the agent must not reach it
    port = listener.getsockname()[1]
    hooks_off = "*** Begin Patch\n*** Add File: .codex/config.toml\n+[features]\n+hooks = false\n*** End Patch"
    code, summary, stderr = tether_run(repo, [
        shell("touch pwned.txt"),  # denied by the pre hook: never runs
        shell("mkdir -p secrets && echo key > secrets/k.txt"),  # runs, is measured and rolled back
        shell("env > seen-env.txt"),
        # Codex's own config, the one Tether wrote, is not the agent's to change
        shell('printf "[features]\\nhooks = false\\n" > "$CODEX_HOME/config.toml"; echo "exit=$?" > tamper.txt'),
        patch_turn(hooks_off),  # a project config for the next session: denied by the write rules
        shell(f"(echo hi > /dev/tcp/127.0.0.1/{port}) > net.txt 2>&1; echo exit=$? >> net.txt"),
        shell("touch still-denied.txt"),
        patch_turn(),
        {"content": "Fixed."},
    ], tmp_path)
    listener.close()
    assert code == 0 and summary["status"] == "succeeded", stderr
    files = delivered(repo, summary)
    assert "pwned.txt" not in files and "still-denied.txt" not in files
    assert not any(p.startswith(("secrets/", ".codex/")) for p in files)
    assert git(repo, "show", f"{summary['branch']}:raindrops.py") == FIX
    seen_env = git(repo, "show", f"{summary['branch']}:seen-env.txt")
    assert "TETHER_GATEWAY_TOKEN=tg-" in seen_env and "OPENAI_API_KEY" not in seen_env
    assert "exit=0" not in git(repo, "show", f"{summary['branch']}:tamper.txt")
    assert "exit=1" in git(repo, "show", f"{summary['branch']}:net.txt")
    assert [d["rule"] for d in summary["denials"]] == ["commands.deny", "writes.deny", "writes.policy",
                                                       "commands.deny"]
    assert summary["checks"][0]["passed"]
    events = subprocess.run([*TETHER, "verify", summary["run_id"]], cwd=repo, capture_output=True, text=True)
    assert events.returncode == 0, events.stderr


def test_codex_waits_for_the_owner_of_a_patched_file_then_resumes_its_session(repo: Path, tmp_path: Path):
    binary("codex")
    (repo / "tether.toml").write_text(GUARDED.replace('"raindrops_test.py" = ["@qa"]', '"raindrops.py" = ["alice"]'))
    # The resumed session is told the owners decided; the model asks for the same patch again.
    code, summary, stderr = tether_run(repo, [patch_turn(), patch_turn(), {"content": "Fixed."}], tmp_path)
    assert code == 4 and summary["status"] == "awaiting_approval", stderr
    (request,) = summary["approvals"]
    assert request["owners"] == ["alice"] and "+    sounds = " in request["diff"]
    assert git(repo, "show", f"{summary['branch']}:raindrops.py") == git(repo, "show", "HEAD:raindrops.py")
    approved = subprocess.run([*TETHER, "approve", summary["run_id"], "--json"], cwd=repo, capture_output=True,
                              text=True, timeout=300, env={**os.environ, "TETHER_TOKEN": token_for(repo, "alice")})
    done = json.loads(approved.stdout)
    assert approved.returncode == 0 and done["status"] == "succeeded", approved.stderr
    assert git(repo, "show", f"{done['branch']}:raindrops.py") == FIX
    assert done["approvals"][0]["decision"] == "approved" and done["approvals"][0]["by"] == "alice"
    assert subprocess.run([*TETHER, "verify", done["run_id"]], cwd=repo).returncode == 0


def test_a_denied_patch_to_an_owned_file_is_never_applied(repo: Path, tmp_path: Path):
    binary("codex")
    (repo / "tether.toml").write_text(GUARDED.replace('"raindrops_test.py" = ["@qa"]', '"raindrops.py" = ["alice"]'))
    code, summary, stderr = tether_run(repo, [patch_turn(), patch_turn(), {"content": "I could not."}], tmp_path)
    assert code == 4, stderr
    denied = subprocess.run([*TETHER, "deny", summary["run_id"], "--reason", "not like this", "--json"], cwd=repo,
                            capture_output=True, text=True, timeout=300)
    done = json.loads(denied.stdout)
    assert done["status"] == "failed", denied.stderr  # the checks still fail: nothing was written
    assert git(repo, "show", f"{done['branch']}:raindrops.py") == git(repo, "show", "HEAD:raindrops.py")
    assert "ownership.denied" in [d["rule"] for d in done["denials"]]


def test_a_budget_reached_mid_run_stops_codex(repo: Path, tmp_path: Path):
    binary("codex")
    (repo / "tether.toml").write_text(GUARDED + "[budget]\nmax_steps = 2\n")
    code, summary, stderr = tether_run(repo, [shell("echo one > one.txt"), shell("echo two > two.txt"),
                                              shell("echo three > three.txt"), {"content": "done"}], tmp_path)
    assert code == 3 and summary["status"] == "stopped", stderr
    assert summary["reason"] == "step budget of 2 used"
    files = delivered(repo, summary)
    assert "one.txt" in files and "three.txt" not in files


MINI_AGENT = '''
import json, os, sys, urllib.request, urllib.error

base, key = os.environ["OPENAI_BASE_URL"], os.environ["OPENAI_API_KEY"]
messages = [{"role": "user", "content": sys.argv[1]}]
tools = [{"type": "function", "function": {"name": "write", "parameters": {"type": "object", "properties": {
    "path": {"type": "string"}, "content": {"type": "string"}}}}}]
while True:
    request = urllib.request.Request(base + "/chat/completions", json.dumps(
        {"model": "any", "messages": messages, "tools": tools}).encode(),
        {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    try:
        reply = json.load(urllib.request.urlopen(request))["choices"][0]["message"]
    except urllib.error.HTTPError as error:
        print("mini-agent:", json.load(error)["error"]["message"])
        sys.exit(1)
    messages.append(reply)
    if not reply.get("tool_calls"):
        print(reply["content"])
        break
    for call in reply["tool_calls"]:
        arguments = json.loads(call["function"]["arguments"])
        with open(arguments["path"], "w") as out:
            out.write(arguments["content"])
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": "written"})
'''


def write_turn(path: str, content: str) -> dict:
    return {"tool_calls": [{"name": "write", "arguments": {"path": path, "content": content}}]}


def with_mini_agent(repo: Path) -> None:
    (repo / "mini_agent.py").write_text(MINI_AGENT)
    git(repo, "add", "mini_agent.py")
    git(repo, "-c", "user.email=dev@example.com", "-c", "user.name=Dev", "commit", "-qm", "a small CLI agent")


def test_any_cli_with_an_openai_base_url_runs_behind_the_gateway(repo: Path, tmp_path: Path):
    with_mini_agent(repo)
    (repo / "tether.toml").write_text(GUARDED)
    code, summary, stderr = tether_run(repo, [write_turn("notes.txt", "a note\n"), write_turn("raindrops.py", FIX),
                                              {"content": "Fixed."}], tmp_path, "command:python3 mini_agent.py")
    assert code == 0 and summary["status"] == "succeeded", stderr
    assert git(repo, "show", f"{summary['branch']}:raindrops.py") == FIX
    assert summary["usage"]["steps"] == 3


def test_a_cli_without_hooks_that_writes_a_protected_file_is_rolled_back_and_stopped(repo: Path, tmp_path: Path):
    with_mini_agent(repo)
    (repo / "tether.toml").write_text(GUARDED)
    code, summary, stderr = tether_run(repo, [write_turn("notes.txt", "kept\n"),
                                              write_turn("raindrops_test.py", "def test_nothing():\n    pass\n"),
                                              write_turn("after.txt", "never\n"), {"content": "done"}],
                                       tmp_path, "command:python3 mini_agent.py {task}")
    assert code == 3 and summary["status"] == "stopped", stderr
    assert "raindrops_test.py" in summary["reason"]
    files = delivered(repo, summary)
    assert "notes.txt" in files and "after.txt" not in files
    assert git(repo, "show", f"{summary['branch']}:raindrops_test.py") == git(repo, "show", "HEAD:raindrops_test.py")


def test_an_unknown_agent_is_refused_before_a_run_is_made(repo: Path, tmp_path: Path):
    for agent in ("aider", "command:", "command:   "):
        code, summary, stderr = tether_run(repo, [{"content": "x"}], tmp_path, agent)
        assert code == 2 and "no external agent" in stderr and summary == {}
    listed = subprocess.run([*TETHER, "runs", "--json"], cwd=repo, capture_output=True, text=True)
    assert json.loads(listed.stdout or "[]") == []


def test_an_agents_run_whose_process_died_resumes_on_its_work_so_far(repo: Path, tmp_path: Path):
    import os
    import signal
    import time

    binary("codex")
    (repo / "tether.toml").write_text(GUARDED)
    script = tmp_path / "turns.json"
    # The agent's home outlives the process: the resumed agent, which starts its turns again, does
    # not sleep a second time.
    script.write_text(json.dumps([shell("echo one > one.txt"),
                                  shell('test -f "$HOME/slept" || { : > "$HOME/slept"; sleep 60; }'),
                                  patch_turn(), {"content": "Fixed."}]))
    first = subprocess.Popen([*TETHER, "run", "x", "--agent", "codex", "--model", f"scripted:{script}", "--json"],
                             cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 90
    while not list((repo / ".tether" / "agents").glob("*/home/slept")):
        assert time.time() < deadline and first.poll() is None, first.stderr.read() if first.stderr else ""
        time.sleep(0.1)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    (run_id,) = [p.name for p in (repo / ".tether" / "agents").iterdir()]
    resumed = subprocess.run([*TETHER, "resume", run_id, "--json"], cwd=repo, capture_output=True, text=True,
                             timeout=300)
    summary = json.loads(resumed.stdout)
    assert resumed.returncode == 0 and summary["status"] == "succeeded", resumed.stderr
    assert git(repo, "show", f"{summary['branch']}:raindrops.py") == FIX
    assert "one.txt" in delivered(repo, summary)
    assert subprocess.run([*TETHER, "verify", run_id], cwd=repo).returncode == 0


def test_a_codex_run_replays_identical(repo: Path, tmp_path: Path):
    binary("codex")
    (repo / "tether.toml").write_text(GUARDED)
    code, summary, stderr = tether_run(repo, [shell("echo checked > notes.txt"), patch_turn(),
                                              {"content": "Fixed."}], tmp_path)
    assert code == 0, stderr
    replayed = subprocess.run([*TETHER, "replay", summary["run_id"], "--json"], cwd=repo, capture_output=True,
                              text=True, timeout=300)
    report = json.loads(replayed.stdout)
    assert replayed.returncode == 0 and report["identical"], report
    assert report["steps_compared"] == 2 and report["replay_status"] == "succeeded"
