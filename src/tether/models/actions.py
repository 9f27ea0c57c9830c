"""The text action format for small local models, which cannot carry code inside JSON strings
(see shared/notes/local-models.md): one action per reply, in fenced blocks, parsed leniently.

    ```bash            run a command
    FILE: path         write a whole file with the fenced block that follows
    SUBMIT             finish (the required checks decide)

A code block right after a line naming a file in backticks (`src/a.py`) writes that file too.
A JSON tool call (`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, the format these
models were trained on) is accepted too."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from tether.models.tools import TOOLS

INSTRUCTIONS = """Reply with a short thought, then exactly ONE action in one of these three forms.

1. Run one shell command:
```bash
<the command>
```

2. Write a whole file (the complete new content, not a diff):
FILE: <path of the file>
```
<the complete content of the file>
```

3. Finish, when the task is done:
SUBMIT"""

FORMAT_ERROR = "Your reply had no action Tether could read. " + INSTRUCTIONS

# The opening fence may be doubled ("```" then "```python"), as small models sometimes write it.
_FILE = re.compile(r"^\s*(?:FILE|File|file)\s*:\s*`?([^\s`]+)`?\s*\n+```[\w+-]*[^\n]*\n(?:```[\w+-]*\n)?(.*?)\n?```",
                   re.MULTILINE | re.DOTALL)
# Small models often name the file in prose right before its code: "... in `raindrops.py`:" + block.
_NAMED = re.compile(r"`([\w./-]+\.[A-Za-z0-9]+)`[^\n`]*\n+```(?!bash|sh\b|shell|console)[\w+-]*[^\n]*\n"
                    r"(?:```[\w+-]*\n)?(.*?)\n?```", re.DOTALL)
_BASH = re.compile(r"```(?:bash|sh|shell|console)[^\n]*\n(.*?)\n?```", re.DOTALL)
_TOOL_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)
_JSON_BLOCK = re.compile(r"```(?:json)?\s*\n(\{.*?\})\s*\n?```", re.DOTALL)
_SUBMIT = re.compile(r"^\s*\**SUBMIT\**\s*$", re.MULTILINE)
# Small models echo the format's own labels: the label of form 3 alone means form 3.
_FINISH_LABEL = re.compile(r"^\s*(?:3\.\s*)?Finish, when the task is done\b", re.MULTILINE)
# The format's own placeholders ("<the command>", "<the complete content of the file>") echoed back.
_PLACEHOLDER = re.compile(r"\s*<[^<>\n]{1,80}>\s*")


def _without_comments(text: str) -> str:
    """The text without `// ...` line comments outside JSON strings (small models annotate their calls)."""
    kept, in_string, index = [], False, 0
    while index < len(text):
        char = text[index]
        if in_string:
            kept.append(char)
            if char == "\\":
                kept.append(text[index + 1: index + 2])
                index += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
            kept.append(char)
        elif text.startswith("//", index):
            end = text.find("\n", index)
            index = len(text) if end == -1 else end
            continue
        else:
            kept.append(char)
        index += 1
    return "".join(kept)


def _bare_objects(text: str) -> list[Any]:
    """Every JSON object written bare in the text (`{"name": "submit", "arguments": {}}`)."""
    decoder, found, index = json.JSONDecoder(), [], text.find("{")
    while index != -1:
        try:
            value, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            index = text.find("{", index + 1)
            continue
        found.append(value)
        index = text.find("{", end)
    return found


def parse_json_call(text: str) -> tuple[str, dict[str, Any]] | None:
    """A tool call written as JSON: in <tool_call> tags, in a fenced block, or bare in the text."""
    candidates: list[Any] = []
    for pattern in (_TOOL_CALL, _JSON_BLOCK):
        for match in pattern.finditer(text):
            for source in (match.group(1), _without_comments(match.group(1))):
                with contextlib.suppress(json.JSONDecodeError):
                    candidates.append(json.loads(source))
                    break
    for data in [*candidates, *_bare_objects(text), *_bare_objects(_without_comments(text))]:
        name = data.get("name") if isinstance(data, dict) else None
        arguments = data.get("arguments", data.get("parameters", {})) if isinstance(data, dict) else None
        if isinstance(arguments, str):  # the OpenAI wire format: arguments as a JSON string
            with contextlib.suppress(json.JSONDecodeError):
                arguments = json.loads(arguments)
        if name in TOOLS and isinstance(arguments, dict):
            return name, arguments
    return None


def parse_action(text: str) -> tuple[str, dict[str, Any]] | None:
    """The action in a reply, as (tool name, arguments), or None when there is none. Small models
    often write several ("run the tests" and the file, or the file and SUBMIT): the file write is
    the substantive one and runs first (with check_after_write its checks then decide), then a
    command, then SUBMIT. An empty file block, or one holding the format's own placeholder, is an echo
    of the format, not a write: it would wipe the file (a command empties a file on purpose)."""
    for pattern in (_FILE, _NAMED):
        for match in pattern.finditer(text):
            if match.group(2).strip() and not _echo(match.group(1)) and not _echo(match.group(2)):
                return "write_file", {"path": match.group(1), "content": match.group(2) + "\n"}
    for match in _BASH.finditer(text):
        if not _echo(match.group(1)):
            return "bash", {"command": match.group(1).strip()}
    if match := _SUBMIT.search(text) or _FINISH_LABEL.search(text):
        return "submit", {"summary": text[: match.start()].strip()[-500:] or "done"}
    return parse_json_call(text)


def _echo(block: str) -> bool:
    return _PLACEHOLDER.fullmatch(block) is not None
