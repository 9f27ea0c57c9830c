"""The tool vocabulary: each tool's name, arguments, whether it writes a path, and how a call is
shown. One place, read by the toolbox (the specs models see), the guard (arguments it requires,
tools that write), the printers and the local action parser. Arguments are a stable interface."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tether.models.base import ToolSpec


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    arguments: dict[str, str]  # name -> description; every argument is a string
    optional: tuple[str, ...] = ()  # arguments the guard does not insist on
    writes_path: bool = False  # writes the file named by its `path` argument
    shown: str | None = None  # the argument that stands for a call on screen

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(name for name in self.arguments if name not in self.optional)

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, {
            "type": "object",
            "properties": {key: {"type": "string", "description": text} for key, text in self.arguments.items()},
            "required": list(self.arguments),
        })


_PATH = "path relative to the repository root"
TOOLS: dict[str, Tool] = {tool.name: tool for tool in (
    Tool("bash", "Run a shell command in the repository (sandboxed, no network).",
         {"command": "the command line"}, shown="command"),
    Tool("read_file", "Read a text file of the repository.", {"path": _PATH}, shown="path"),
    Tool("write_file", "Create or overwrite a file with the given content.",
         {"path": _PATH, "content": "the complete new file content"}, writes_path=True, shown="path"),
    Tool("edit_file", "Replace one exact occurrence of `old` with `new` in a file.",
         {"path": _PATH, "old": "exact text to replace (must occur once)", "new": "replacement text"},
         writes_path=True, shown="path"),
    Tool("submit", "Finish: runs the required checks; the task is done only when they pass.",
         {"summary": "what you changed and why"}, optional=("summary",), shown="summary"),
    Tool("remember", "Keep one short note for later runs on this repository: how to run its tests, where "
         "something lives, a trap that cost you steps. People review notes; never a secret.",
         {"text": "the note, one or two sentences"}, shown="text"),
)}
WRITE_TOOLS = tuple(name for name, tool in TOOLS.items() if tool.writes_path)
UNCHANGING_TOOLS = ("read_file", "submit", "remember")  # cannot change the worktree
MEMORY_TOOLS = ("remember",)  # offered only when the policy turns memory on
SPECS = [tool.spec for tool in TOOLS.values() if tool.name not in MEMORY_TOOLS]
MEMORY_SPECS = [*SPECS, TOOLS["remember"].spec]


def specs(memory: bool) -> list[ToolSpec]:
    """The tools a model is offered."""
    return MEMORY_SPECS if memory else SPECS


# The main argument of other agents' tools (Claude Code's), for a call shown in one line.
_OTHERS_SHOWN = ("command", "file_path", "notebook_path", "path", "url", "pattern", "query")


def summarize_call(name: str, arguments: dict[str, Any]) -> str:
    """A call in one line: its main argument, or its arguments as JSON for a tool we do not know."""
    tool = TOOLS.get(name)
    if tool is not None and tool.shown is not None:
        return str(arguments.get(tool.shown, ""))
    shown = next((key for key in _OTHERS_SHOWN if isinstance(arguments.get(key), str)), None)
    return str(arguments[shown]) if shown else json.dumps(arguments)
