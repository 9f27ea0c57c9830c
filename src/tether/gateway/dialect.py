"""A small local model behind an external agent. Such a model answers in Tether's own text actions
(bash, write_file, edit_file, read_file, submit) and has a context of a few thousand tokens: it
can read neither Claude Code's nor Codex's system prompt and tool definitions (10-12k tokens), nor
call their tools. So the gateway asks it as Tether's own agent would (Tether's short system prompt,
Tether's tools, the agent's conversation otherwise as it is) and puts each action it answers into
the agent's own tool (Bash or exec_command, Write, Edit, Read), with paths made absolute where the
agent wants them; submit is a plain reply, which ends the agent's turn."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

from tether.agents.harness import SYSTEM_PROMPT
from tether.gateway.wire import Request
from tether.models import ModelResponse, Provider, ToolCall
from tether.models.tools import SPECS

HEREDOC_END = "TETHER_EOF"


def speaks_tether_actions(provider: Provider) -> bool:
    """A provider with a text action format of its own (the local models) replies with Tether's tools."""
    return provider.format_hint is not None


def as_tether_request(request: Request) -> tuple[list[Any], list[Any]]:
    """(messages, tools) to ask the model with: Tether's system prompt and tools."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT},
                *(m for m in request.messages if m["role"] != "system")]
    return messages, list(SPECS)


def to_agent_calls(response: ModelResponse, request: Request, root: Path) -> ModelResponse:
    """The reply with each Tether action as the agent's own tool call (one it offered)."""
    offered = {tool.name for tool in request.tools}
    calls = [translated for call in response.tool_calls
             if (translated := _translate(call, offered, root)) is not None]
    return replace(response, tool_calls=calls)


def _translate(call: ToolCall, offered: set[str], root: Path) -> ToolCall | None:
    arguments = call.arguments
    path = str(root / arguments["path"]) if isinstance(arguments.get("path"), str) else ""
    if "Bash" in offered:  # Claude Code
        if call.name == "bash":
            return ToolCall(call.id, "Bash", {"command": arguments.get("command", ""), "description": "step"})
        if call.name == "write_file":
            return ToolCall(call.id, "Write", {"file_path": path, "content": arguments.get("content", "")})
        if call.name == "edit_file":
            return ToolCall(call.id, "Edit", {"file_path": path, "old_string": arguments.get("old", ""),
                                              "new_string": arguments.get("new", "")})
        if call.name == "read_file":
            return ToolCall(call.id, "Read", {"file_path": path})
    elif "exec_command" in offered:  # Codex: everything through its shell
        return ToolCall(call.id, "exec_command", {"cmd": _as_command(call)}) if call.name != "submit" else None
    return None  # submit, or an agent whose tools are not known: the reply's text alone


def _as_command(call: ToolCall) -> str:
    arguments = call.arguments
    path = shlex.quote(str(arguments.get("path", "")))
    if call.name == "write_file":
        content = str(arguments.get("content", ""))
        return f"cat > {path} <<'{HEREDOC_END}'\n{content.rstrip(chr(10))}\n{HEREDOC_END}"
    if call.name == "read_file":
        return f"cat {path}"
    if call.name == "edit_file":  # one exact replacement, as Tether's edit_file makes it
        script = ("import sys; p, old, new = sys.argv[1:]; t = open(p).read(); "
                  "assert t.count(old) == 1, 'old must occur once'; open(p, 'w').write(t.replace(old, new))")
        return (f"python3 -c {shlex.quote(script)} {path} {shlex.quote(str(arguments.get('old', '')))} "
                f"{shlex.quote(str(arguments.get('new', '')))}")
    return str(arguments.get("command", ""))
