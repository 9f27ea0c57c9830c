"""Claude Code's tools in Tether's vocabulary, so its hooks can put each call to the guard.

A tool that runs or writes something becomes the Tether call the guard judges (Bash as bash;
Write, Edit, MultiEdit and NotebookEdit as writes to their file; Read, Glob, Grep and LS, when
they name a path, as a read of it: the path must be inside the worktree). Tools that only plan
or talk are allowed as they are; web tools are refused unless the policy allows the network; any
other tool (an MCP server's, one this version does not know) is refused: the guard fails closed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tether.guard.decisions import ALLOW, Decision
from tether.models import ToolCall

NO_SIDE_EFFECTS = {"TodoWrite", "TodoRead", "ExitPlanMode", "Task", "Agent", "BashOutput", "KillShell",
                   "KillBash", "ListMcpResourcesTool", "SlashCommand", "Skill"}
READS = {"Read": "file_path", "Glob": "path", "Grep": "path", "LS": "path", "NotebookRead": "notebook_path"}
NETWORK = {"WebFetch", "WebSearch"}


def claude_code_call(call_id: str, name: str, tool_input: dict[str, Any], network: bool) -> ToolCall | Decision:
    """The Tether call the guard is to judge, or the decision itself for a tool with nothing to judge."""
    if name == "Bash":
        return ToolCall(call_id, "bash", {"command": tool_input.get("command")})
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
