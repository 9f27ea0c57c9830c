"""Claude Code's and Codex's tools in Tether's vocabulary, so their hooks can put each call to the guard.

A tool that runs or writes something becomes the Tether calls the guard judges. Claude Code: Bash
as bash; Write, Edit, MultiEdit and NotebookEdit as writes to their file; Read, Glob, Grep and LS,
when they name a path, as a read of it (the path must be inside the worktree). Codex: its shell
(`Bash` in its hooks) as bash, except a command that applies a patch, which is, like its
apply_patch tool, a write of each file the patch changes. Tools that only plan or talk are allowed
as they are; web tools are refused unless the policy allows the network; any other tool (an MCP
server's, one this version does not know) is refused: the guard fails closed. A command that is
`tether-remember NOTE` alone is the `remember` tool: the note goes through the guard to the
repository's memory and the command is not run."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from tether.gateway.patches import PatchError, patch_in_command, read_patch
from tether.guard.decisions import ALLOW, Decision
from tether.guard.scopes import PathDenied, resolve_in_worktree
from tether.guard.shell import analyze
from tether.models import ToolCall
from tether.workspace.files import read_regular

AGENTS = ("claude-code", "codex")
REMEMBER_COMMAND = "tether-remember"
PATCH_READ_LIMIT = 4 << 20  # a larger file's update is judged by its path alone

NO_SIDE_EFFECTS = {"TodoWrite", "TodoRead", "ExitPlanMode", "Task", "Agent", "BashOutput", "KillShell",
                   "KillBash", "ListMcpResourcesTool", "SlashCommand", "Skill", "ToolSearch",
                   "DeferredToolPlaceholder"}
READS = {"Read": "file_path", "Glob": "path", "Grep": "path", "LS": "path", "NotebookRead": "notebook_path"}
NETWORK = {"WebFetch", "WebSearch"}
# Tools the provider runs itself, on its own network (web search and fetch, code execution).
HOSTED_NETWORK_TOOLS = ("web_search", "web_fetch", "code_execution", "code_interpreter")


# Codex's tools beyond its shell and its patch: what each is, for the gateway's coverage check.
CODEX_NO_SIDE_EFFECTS = {"request_user_input", "view_image", "create_goal", "get_goal", "update_goal",
                         "update_plan"}
CODEX_JUDGED = {"exec_command", "shell", "local_shell", "apply_patch"}


def coverage(agent: str, tool: dict[str, Any], network: bool) -> str:
    """How one tool an agent offers its model is governed: "judged" (its hook puts each call to the
    guard), "no side effects" (allowed as it is), or "removed" (taken out of the request: a tool
    whose calls reach no hook, such as Codex's write_stdin typing into a running program, its
    sub-agents, a tool this version does not know, or a network tool the policy does not allow)."""
    kind = str(tool.get("type") or "")
    name = str(tool.get("name") or "")
    if kind and kind not in ("function", "custom", "custom_tool") and not name:
        name = kind  # a provider's hosted tool (web_search, code_execution)
    if kind.startswith(HOSTED_NETWORK_TOOLS) or name in HOSTED_NETWORK_TOOLS:
        return "no side effects" if network else "removed"  # the provider runs it, on its network: no hook
    if agent == "codex":
        if name in CODEX_JUDGED:
            return "judged"
        return "no side effects" if name in CODEX_NO_SIDE_EFFECTS else "removed"
    if name in ("Bash", "Write", "Edit", "MultiEdit", "NotebookEdit") or name in READS or name in NETWORK:
        return "judged"
    return "no side effects" if name in NO_SIDE_EFFECTS else "removed"


def governed_tools(agent: str, tools: list[Any], network: bool) -> tuple[list[Any], list[str]]:
    """(the tools the model may be offered, the names of those taken out)."""
    kept: list[Any] = []
    removed: list[str] = []
    for tool in tools:
        if isinstance(tool, dict) and coverage(agent, tool, network) == "removed":
            removed.append(str(tool.get("name") or tool.get("type") or "?"))
        else:
            kept.append(tool)
    return kept, removed


def refused_call(agent: str, call: ToolCall, network: bool) -> Decision | None:
    """A call in the model's reply that the agent must not execute: one to a tool Tether takes out
    of requests (an agent executes some tools it did not offer), or a shell command asking for an
    interactive terminal."""
    if coverage(agent, {"name": call.name}, network) == "removed":
        return Decision("deny", "tools.removed", f"the model called {call.name}, a tool whose calls reach no hook "
                        "(Tether takes it out of the requests); the call was dropped")
    if agent == "codex" and call.name == "exec_command" and call.arguments.get("tty") is True:
        return Decision("deny", "tools.interactive", "exec_command asked for a terminal (tty), for an interactive "
                        "program that would take input no hook sees; the call was dropped")
    return None


def agent_of_wire(wire: str) -> str | None:
    """The agent a developer's own session is, by the API it speaks (hooks are only for these two)."""
    return {"anthropic": "claude-code", "responses": "codex"}.get(wire)


def tool_calls(agent: str, call_id: str, name: str, tool_input: dict[str, Any], network: bool,
               root: Path) -> list[ToolCall] | Decision:
    """The Tether calls the guard is to judge for one of the agent's tool calls (all must be allowed),
    or the decision itself for a tool with nothing to judge."""
    if agent == "codex":
        return codex_calls(call_id, name, tool_input, network, root)
    mapped = claude_code_call(call_id, name, tool_input, network)
    return mapped if isinstance(mapped, Decision) else [mapped]


def remembered_note(command: str) -> str | None:
    """The note of a command line that is `tether-remember` and nothing else, with literal words."""
    if REMEMBER_COMMAND not in command:
        return None
    analysis = analyze(command)
    if analysis.unknowable or len(analysis.commands) != 1:
        return None
    words = analysis.commands[0].words
    if words[0] != REMEMBER_COMMAND or len(words) < 2 or any(word is None for word in words):
        return None
    return " ".join(word for word in words[1:] if word is not None)


def shell_call(call_id: str, command: Any) -> ToolCall:
    """A command as the guard judges it: `bash`, or `remember` for a tether-remember line."""
    note = remembered_note(command) if isinstance(command, str) else None
    return ToolCall(call_id, "remember", {"text": note}) if note is not None else \
        ToolCall(call_id, "bash", {"command": command})


def codex_calls(call_id: str, name: str, tool_input: dict[str, Any], network: bool,
                root: Path) -> list[ToolCall] | Decision:
    """Codex names its shell `Bash` in hooks (the command in tool_input.command) and its patch tool
    `apply_patch` (the patch in tool_input.command too)."""
    command = tool_input.get("command")
    if name == "Bash" and isinstance(command, str) and patch_in_command(command) is None:
        return [shell_call(call_id, command)]
    if name in ("Bash", "apply_patch"):
        patch = patch_in_command(command) if name == "Bash" and isinstance(command, str) else command
        if not isinstance(patch, str):
            return Decision("deny", "tools.arguments", f"{name}: tool_input.command must be a string")
        return patch_writes(call_id, patch, root)
    if name in ("web_search", "WebSearch"):
        return claude_code_call(call_id, "WebSearch", tool_input, network)
    return Decision("deny", "tools.unknown", f"{name} is not a tool Tether can judge (an MCP server's, or one it "
                                             "does not know); refused")


def patch_writes(call_id: str, patch: str, root: Path) -> list[ToolCall] | Decision:
    """A patch as the whole-file writes it makes (an update whose hunks do not apply exactly to the
    file is judged as an edit of it: its path and owners still decide)."""
    try:
        changes = read_patch(patch, lambda path: _text(root, path))
    except PatchError as exc:
        return Decision("deny", "tools.arguments", f"the patch cannot be read: {exc}")
    calls: list[ToolCall] = []
    for number, change in enumerate(changes):
        ident = f"{call_id}.{number}" if len(changes) > 1 else call_id
        if change.content is None and change.op == "update":
            old, new = change.hunks[0]
            calls.append(ToolCall(ident, "edit_file", {"path": change.path, "old": old, "new": new}))
            continue
        if change.move_to:  # the old path is emptied, the new one written
            calls.append(ToolCall(ident, "write_file", {"path": change.path, "content": ""}))
            calls.append(ToolCall(f"{ident}.moved", "write_file", {"path": change.move_to,
                                                                   "content": change.content or ""}))
        else:  # a deleted file is judged as emptied: a destructive write
            calls.append(ToolCall(ident, "write_file", {"path": change.path, "content": change.content or ""}))
    return calls


def _text(root: Path, path: str) -> str | None:
    """A worktree file's text, read without following a link out of it; None when it cannot be."""
    try:
        data, size = read_regular(root / resolve_in_worktree(root, path), PATCH_READ_LIMIT)
    except (PathDenied, OSError):
        return None
    return data.decode("utf-8", "replace") if size <= len(data) else None


def claude_code_call(call_id: str, name: str, tool_input: dict[str, Any], network: bool) -> ToolCall | Decision:
    """The Tether call the guard is to judge, or the decision itself for a tool with nothing to judge."""
    if name == "Bash":
        return shell_call(call_id, tool_input.get("command"))
    if name == "Write":
        return ToolCall(call_id, "write_file", {"path": tool_input.get("file_path"),
                                                "content": tool_input.get("content")})
    if name == "Edit":
        return ToolCall(call_id, "edit_file", {"path": tool_input.get("file_path"), "old": tool_input.get("old_string"),
                                               "new": tool_input.get("new_string")})
    if name == "MultiEdit":
        edits = tool_input.get("edits") or [{}]
        first = edits[0] if isinstance(edits[0], dict) else {}
        return ToolCall(call_id, "edit_file", {"path": tool_input.get("file_path"),
                                               "old": first.get("old_string"), "new": first.get("new_string")})
    if name == "NotebookEdit":
        return ToolCall(call_id, "write_file", {"path": tool_input.get("notebook_path"),
                                                "content": tool_input.get("new_source") or ""})
    if name in READS:
        path = tool_input.get(READS[name])
        return ToolCall(call_id, "read_file", {"path": path}) if path else ALLOW
    if name in NETWORK:
        if network:
            return ALLOW
        return Decision("deny", "commands.network", f"{name} reaches the network, which the policy does not allow "
                                                    "([commands] network)")
    if name in NO_SIDE_EFFECTS:
        return ALLOW
    return Decision("deny", "tools.unknown", f"{name} is not a tool Tether can judge (an MCP server's, or one it "
                                             "does not know); refused")


HOOK_SCRIPT = Path(__file__).with_name("hook.py")


def claude_code_settings(python: str, script: Path = HOOK_SCRIPT) -> dict[str, Any]:
    """Claude Code settings (for --settings) that send every tool call through the gateway's hooks.
    The hook runs as a plain file with -I -S: it needs nothing but the standard library (so a copy
    of it runs in a sandbox that sees none of Tether)."""
    def hook(phase: str) -> list[dict[str, Any]]:
        return [{"matcher": "*", "hooks": [{"type": "command", "timeout": 60,
                                            "command": f"{python} -I -S {script} claude-code {phase}"}]}]
    return {"hooks": {"PreToolUse": hook("pre"), "PostToolUse": hook("post")}}


HTTP_HOOK_PATH = "/tether/hooks/claude-code"


def claude_code_http_settings(gateway_url: str, token_env: str = "TETHER_GATEWAY_TOKEN") -> dict[str, Any]:
    """Claude Code settings whose hooks the gateway answers in-process over HTTP (Claude Code
    2.1.295 and later): no process per tool call. The token comes from the agent's environment
    (`token_env`, the one variable the hook may read: Claude Code 2.1.328 will not put
    ANTHROPIC_API_KEY, a credential to it, in a hook's header); a gateway that cannot be reached, or
    answers with an error, blocks the call (onFailure), and one that cannot judge it answers with a deny."""
    hook = {"type": "http", "url": gateway_url.rstrip("/") + HTTP_HOOK_PATH, "timeout": 60, "onFailure": "block",
            "headers": {"x-api-key": f"${{{token_env}}}"}, "allowedEnvVars": [token_env]}
    return {"hooks": {event: [{"matcher": "*", "hooks": [hook]}] for event in ("PreToolUse", "PostToolUse")}}


def codex_hooks(python: str, script: Path = HOOK_SCRIPT) -> str:
    """The [hooks] of a Codex config.toml that send every tool call through the gateway's hooks
    (Codex runs them only when trusted: a Tether run passes --dangerously-bypass-hook-trust, as it
    wrote them itself; a developer trusts them once with /hooks)."""
    tables = []
    for event, phase in (("PreToolUse", "pre"), ("PostToolUse", "post")):
        command = json.dumps(f"{shlex.quote(python)} -I -S {shlex.quote(str(script))} codex {phase}")
        tables.append(f'[[hooks.{event}]]\nmatcher = "*"\n[[hooks.{event}.hooks]]\ntype = "command"\n'
                      f'timeout = 60\ncommand = {command}\n')  # a JSON string is a TOML basic string
    return "\n".join(tables)
