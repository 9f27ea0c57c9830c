"""An external agent as the run's loop (`tether run --agent claude-code|codex|command:CLI`): the agent
runs inside the run's sandbox, in its worktree, with settings Tether wrote. Its only network is the
run's model gateway (a unix socket bound into the sandbox, carried to a loopback port by a
forwarder), its only key a token for this run. Claude Code's and Codex's tool calls pass the
run's guard through their hooks; any other CLI's steps are measured at each of its model requests.
When it exits, the required checks decide the run, as for Tether's own agent."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import uvicorn

from tether.agents.session import Session
from tether.agents.tools import failure_report
from tether.gateway.agent_tools import REMEMBER_COMMAND, claude_code_http_settings, codex_hooks
from tether.gateway.app import make_app
from tether.gateway.core import Gateway, GatewayRun, issue_token
from tether.guard.decisions import RunFailed, RunPaused, RunStopped, RunSucceeded
from tether.guard.scopes import WriteRules
from tether.paths import tether_dir

GATEWAY_FILES = Path(__file__).parents[1] / "gateway"
AGENT_TIMEOUT_S = 3600.0
# The agents read these from the repository: hooks to disable, servers to add. They are started
# with none of them, and may not plant them in the branch for the next run (or a person's own session).
AGENT_SETTINGS = ("/.claude/", "/.mcp.json", "/CLAUDE.local.md", "/.codex/")
RESUMED = "The owners have decided on the change you were waiting for. Go on with the task."
AGENT_RESUMED = ("(This task was interrupted and is resumed: the working directory holds the work done so far. "
                 "Look at it before you go on.)")


@dataclass(frozen=True)
class Exit:
    """What the agent's CLI said as it exited: its session (to resume), its last word, an error."""
    session: str | None
    text: str
    error: bool


def check_agent(agent: str) -> None:
    """Refuse an agent Tether cannot run, before a run is made for it."""
    if agent in ("claude-code", "codex") or (agent.startswith("command:") and agent[len("command:"):].strip()):
        return
    raise ValueError(f"no external agent {agent!r}: use claude-code, codex, or command:\"CLI ...\" for a CLI "
                     "that takes an OpenAI-compatible base URL")


def agents_dir() -> Path:
    """Where the external agents are installed: $TETHER_AGENTS_DIR (an npm prefix), by default the
    .agents/ that scripts/setup fills in Tether's checkout."""
    prefix = os.environ.get("TETHER_AGENTS_DIR")
    return (Path(prefix) if prefix else Path(__file__).parents[3] / ".agents") / "node_modules"


def run_external(session: Session, agent: str, task: str) -> None:
    """Run the agent to its end; a run paused for its owners' approval goes on from the agent's
    own session (`claude --resume`, `codex exec resume`), kept in the run's agent folder meanwhile."""
    try:
        check_agent(agent)
    except ValueError as exc:
        raise RunFailed(str(exc), "agent.unknown") from exc
    agents = agents_dir().resolve()  # bound into the sandbox where it really is (its /tmp is its own)
    session.guard.writes = WriteRules.build(session.policy.writes, AGENT_SETTINGS)
    session.guard.write_tools = {"claude-code": "your Write or Edit tool", "codex": "apply_patch"}.get(
        agent, "a write the owners can approve (a command's own writes cannot ask them)")
    state = tether_dir(session.worktree.repo) / "agents" / session.run_id
    home = state / "home"  # the agent's HOME: its session history, for a resume after an approval
    home.mkdir(parents=True, exist_ok=True)
    for script in ("hook.py", "forward.py"):  # the sandbox sees neither Tether's code nor its packages
        shutil.copy(GATEWAY_FILES / script, state / script)
    if session.policy.memory.enabled:
        task += (f"\n\nTo keep a short note for later runs on this repository (how to run its tests, a trap that cost "
                 f"you steps), run `{REMEMBER_COMMAND} 'the note'` as a command of its own; people review notes.")
    resumed_file = state / "agent-session"
    resumed = resumed_file.read_text().strip() if resumed_file.is_file() else None

    gateway = Gateway(session.log.ledger, upstream=session.provider)
    token, _ = issue_token(session.log.ledger, "agent", session.provider.name, session.policy, run_id=session.run_id)
    run = gateway.attach(token, session, hooks=not agent.startswith("command:"),
                         agent=agent if agent in ("claude-code", "codex") else None)
    port = _free_port()  # the sandbox's own loopback; free on the host too, for a sandbox without bwrap
    url = f"http://127.0.0.1:{port}"
    env = {"HOME": str(home), "TETHER_GATEWAY_URL": url, "TETHER_GATEWAY_TOKEN": token}
    overlays: dict[Path, Path] = {}
    if agent == "claude-code":
        command = _claude_code(agents, state, env, task, resumed)
    elif agent == "codex":
        command = _codex(agents, state, home, env, overlays, session, task, resumed)
    else:
        command = _command(agent[len("command:"):], env, task)
    for path in state.iterdir():
        if path.is_file():
            path.chmod(0o644)
    state.chmod(0o755)

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
    try:
        sandbox = replace(session.sandbox, read_only=[*session.sandbox.read_only, agents, state, socket_dir],
                          writable=[home], overlays={**session.sandbox.overlays, **overlays})
        line = (f"python3 -I -S {state / 'forward.py'} {socket_path} {port} && "
                f"{' '.join(f'{k}={shlex.quote(v)}' for k, v in env.items())} {command}")
        deadline = session.wall_deadline()  # a resumed run has spent some of its budget
        result = sandbox.run(line, AGENT_TIMEOUT_S if deadline is None else max(1.0, deadline - time.time()))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        shutil.rmtree(socket_dir, ignore_errors=True)
    with run.lock:  # whatever it changed after its last hook (or without one) is judged as a step is
        gateway.settle(run)
        gateway.measure_worktree(run, session.meters.steps, "agent.exit")
    said = _codex_exit(result.output) if agent == "codex" else _claude_code_exit(result.output) \
        if agent == "claude-code" else Exit(None, result.output.strip()[-200:], result.exit_code != 0)
    _end(session, run, said, state, resumed_file)


def _end(session: Session, run: GatewayRun, said: Exit, state: Path, resumed_file: Path) -> None:
    if run.deferred is not None and run.stopped is None and said.session:
        resumed_file.write_text(said.session)
        raise RunPaused(f"waiting for approval from {', '.join(run.deferred.owners)} to write "
                        f"{', '.join(run.deferred.paths)}", run.deferred.rule)
    shutil.rmtree(state, ignore_errors=True)
    if run.stopped is not None:
        raise RunStopped(run.stopped.reason, run.stopped.rule)
    final = f"{'error' if said.error else 'done'}: {said.text[:200]}" if said.text else "no result"
    failures = failure_report(session.run_checks("agent.exit"))
    if failures is not None:
        raise RunFailed(f"the agent exited ({final}) and the required checks fail", "checks.failed")
    raise RunSucceeded(f"the agent exited ({final}) and the required checks pass")


def _claude_code(agents: Path, state: Path, env: dict[str, str], task: str, resumed: str | None) -> str:
    claude = agents / ".bin" / "claude"
    if not claude.exists():
        raise RunFailed(f"Claude Code is not installed at {claude} (scripts/setup installs it)", "agent.missing")
    # Its hooks are answered in the gateway's process over HTTP: no Python started per tool call.
    (state / "settings.json").write_text(json.dumps(claude_code_http_settings(env["TETHER_GATEWAY_URL"])))
    env.update({"ANTHROPIC_BASE_URL": env["TETHER_GATEWAY_URL"], "ANTHROPIC_API_KEY": env["TETHER_GATEWAY_TOKEN"],
                "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                "DISABLE_AUTOUPDATER": "1"})
    # A deferred call is answered again on --resume: the recorded decision replies to its hook.
    prompt = f"--resume {shlex.quote(resumed)}" if resumed else shlex.quote(task)
    return (f"{claude} -p {prompt} --output-format json --settings {state / 'settings.json'} "
            "--setting-sources '' --strict-mcp-config")


def _codex(agents: Path, state: Path, home: Path, env: dict[str, str], overlays: dict[Path, Path],
           session: Session, task: str, resumed: str | None) -> str:
    codex = agents / ".bin" / "codex"
    if not codex.exists():
        raise RunFailed(f"Codex is not installed at {codex} (scripts/setup installs it)", "agent.missing")
    web = "live" if session.policy.commands.network else "disabled"
    (state / "config.toml").write_text(
        f'model = {json.dumps(session.provider.name)}\nmodel_provider = "tether"\nweb_search = "{web}"\n'
        f'[model_providers.tether]\nname = "tether"\nbase_url = "{env["TETHER_GATEWAY_URL"]}/v1"\n'
        'env_key = "TETHER_GATEWAY_TOKEN"\nwire_api = "responses"\n\n' + codex_hooks("python3", state / "hook.py"))
    # Codex writes its sessions in its home, so the agent can write there too: the config it reads is
    # Tether's, laid read-only over whatever is at that path.
    (home / "config.toml").unlink(missing_ok=True)
    (home / "config.toml").touch()
    overlays[home / "config.toml"] = state / "config.toml"
    env["CODEX_HOME"] = str(home)
    # Its own sandbox cannot nest in Tether's; the hooks are the ones Tether just wrote.
    flags = ("--json --skip-git-repo-check --ignore-rules --dangerously-bypass-approvals-and-sandbox "
             "--dangerously-bypass-hook-trust")
    if resumed:
        return f"{codex} exec resume {flags} {shlex.quote(resumed)} {shlex.quote(RESUMED)}"
    return f"{codex} exec {flags} {shlex.quote(task)}"


def _command(cli: str, env: dict[str, str], task: str) -> str:
    """Any CLI that takes an OpenAI-compatible base URL from the environment; `{task}` in it is the
    task (quoted), else the task is its last argument."""
    base = f"{env['TETHER_GATEWAY_URL']}/v1"
    env.update({"OPENAI_BASE_URL": base, "OPENAI_API_BASE": base, "OPENAI_API_KEY": env["TETHER_GATEWAY_TOKEN"],
                "TETHER_TASK": task})
    return cli.replace("{task}", shlex.quote(task)) if "{task}" in cli else f"{cli} {shlex.quote(task)}"


def _claude_code_exit(output: str) -> Exit:
    """Claude Code's JSON result (its last word, its session)."""
    for line in reversed(output.strip().splitlines()):
        try:
            result = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(result, dict) and "session_id" in result:
            return Exit(str(result["session_id"]), str(result.get("result", "")), bool(result.get("is_error")))
    return Exit(None, output.strip()[-200:], True)


def _codex_exit(output: str) -> Exit:
    """Codex's --json events: the thread it started, its last message, a failed turn."""
    thread, text, error = None, "", False
    for line in output.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(event, dict):
            continue
        item = event.get("item") if isinstance(event.get("item"), dict) else {}
        if event.get("type") == "thread.started":
            thread = str(event.get("thread_id") or "") or None
        elif event.get("type") == "item.completed" and item.get("type") == "agent_message":
            text, error = str(item.get("text", "")), False
        elif event.get("type") in ("turn.failed", "error"):
            failure = event.get("error") if isinstance(event.get("error"), dict) else event
            text, error = str(failure.get("message", "")), True
    return Exit(thread, text or output.strip()[-200:], error or not text)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
