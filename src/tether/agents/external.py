"""An external agent as the run's loop (`tether run --agent claude-code`): Claude Code runs inside the
run's sandbox, in its worktree, with settings Tether wrote. Its only network is the run's model
gateway (a unix socket bound into the sandbox, carried to a loopback port by a forwarder), its
only key a token for this run, and each of its tool calls passes the run's guard through its
hooks. When it exits, the required checks decide the run, as for Tether's own agent."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import uvicorn

from tether.agents.session import Session
from tether.agents.tools import failure_report
from tether.gateway.agent_tools import claude_code_settings
from tether.gateway.app import make_app
from tether.gateway.core import Gateway, issue_token
from tether.guard.decisions import RunFailed, RunPaused, RunStopped, RunSucceeded
from tether.guard.scopes import WriteRules
from tether.paths import tether_dir

AGENTS = ("claude-code",)
GATEWAY_FILES = Path(__file__).parents[1] / "gateway"
AGENT_TIMEOUT_S = 3600.0
# Claude Code reads these from the repository: hooks to disable, servers to add. It is started with
# none of them (--setting-sources ""), and may not plant them in the branch for the next run.
AGENT_SETTINGS = ("/.claude/", "/.mcp.json", "/CLAUDE.local.md")


def agents_dir() -> Path:
    """Where the external agents are installed: $TETHER_AGENTS_DIR (an npm prefix), by default the
    .agents/ that scripts/setup fills in Tether's checkout."""
    prefix = os.environ.get("TETHER_AGENTS_DIR")
    return (Path(prefix) if prefix else Path(__file__).parents[3] / ".agents") / "node_modules"


def run_external(session: Session, agent: str, task: str) -> None:
    """Run the agent to its end; a run paused for its owners' approval goes on from the agent's
    own session (`claude --resume`), whose history is kept in the run's agent folder meanwhile."""
    if agent not in AGENTS:
        raise RunFailed(f"no external agent {agent!r}; Tether runs {', '.join(AGENTS)}", "agent.unknown")
    agents = agents_dir().resolve()  # bound into the sandbox where it really is (its /tmp is its own)
    claude = agents / ".bin" / "claude"
    if not claude.exists():
        raise RunFailed(f"Claude Code is not installed at {claude} (scripts/setup installs it)", "agent.missing")
    session.guard.writes = WriteRules.build(session.policy.writes, AGENT_SETTINGS)
    state = tether_dir(session.worktree.repo) / "agents" / session.run_id
    home = state / "home"  # the agent's HOME: its session history, for a resume after an approval
    home.mkdir(parents=True, exist_ok=True)
    for script in ("hook.py", "forward.py"):  # the sandbox sees neither Tether's code nor its packages
        shutil.copy(GATEWAY_FILES / script, state / script)
    (state / "settings.json").write_text(json.dumps(claude_code_settings("python3", state / "hook.py")))
    for path in (state / "hook.py", state / "forward.py", state / "settings.json"):
        path.chmod(0o644)
    state.chmod(0o755)
    resumed = state / "agent-session"
    prompt = (f"--resume {shlex.quote(resumed.read_text().strip())}" if resumed.is_file()
              else shlex.quote(task))

    gateway = Gateway(session.log.ledger, upstream=session.provider)
    token, _ = issue_token(session.log.ledger, "agent", session.provider.name, session.policy, run_id=session.run_id)
    run = gateway.attach(token, session)
    # A unix socket's path must be short (108 bytes): its own folder in /tmp, bound into the sandbox.
    socket_dir = Path(tempfile.mkdtemp(prefix="tether-gw-"))
    socket_dir.chmod(0o755)
    socket_path = socket_dir / "gateway.sock"
    server = uvicorn.Server(uvicorn.Config(make_app(gateway), uds=str(socket_path), log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RunFailed("the run's model gateway did not start", "agent.gateway")
        time.sleep(0.02)
    socket_path.chmod(0o666)  # the sandbox user connects to it
    port = _free_port()  # the sandbox's own loopback; free on the host too, for a sandbox without bwrap
    try:
        sandbox = replace(session.sandbox, read_only=[*session.sandbox.read_only, agents, state, socket_dir],
                          writable=[home])
        env = {"ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}", "ANTHROPIC_API_KEY": token, "HOME": str(home),
               "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"}
        command = (f"python3 -I -S {state / 'forward.py'} {socket_path} {port} && "
                   f"{' '.join(f'{k}={shlex.quote(v)}' for k, v in env.items())} "
                   f"{claude} -p {prompt} --output-format json --settings {state / 'settings.json'} "
                   "--setting-sources '' --strict-mcp-config")
        budget = session.policy.budget.max_wall_s
        result = sandbox.run(command, budget if budget is not None else AGENT_TIMEOUT_S)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        shutil.rmtree(socket_dir, ignore_errors=True)
    with run.lock:  # whatever it changed after its last hook (or without one) is judged as a step is
        gateway.measure_worktree(run, session.meters.steps, "agent.exit")
    reply = _result(result.output)
    if run.deferred is not None and run.stopped is None and reply.get("session_id"):
        resumed.write_text(str(reply["session_id"]))
        raise RunPaused(f"waiting for approval from {', '.join(run.deferred.owners)} to write "
                        f"{', '.join(run.deferred.paths)}", run.deferred.rule)
    shutil.rmtree(state, ignore_errors=True)
    if run.stopped is not None:
        raise RunStopped(run.stopped.reason, run.stopped.rule)
    final = (f"{'error' if reply.get('is_error') else 'done'}: {str(reply['result'])[:200]}" if "result" in reply
             else f"no result: {result.output.strip()[-200:]}")
    failures = failure_report(session.run_checks("agent.exit"))
    if failures is not None:
        raise RunFailed(f"the agent exited ({final}) and the required checks fail", "checks.failed")
    raise RunSucceeded(f"the agent exited ({final}) and the required checks pass")


def _result(output: str) -> dict:
    """Claude Code's JSON result (its last word, its session), or {}."""
    for line in reversed(output.strip().splitlines()):
        try:
            result = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(result, dict) and "session_id" in result:
            return result
    return {}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
