"""The text action format for small local models, which cannot carry code inside JSON strings
(see shared/notes/local-models.md): one action per reply, in fenced blocks. A local model's reply
is decoded under a grammar that admits only this format (models/grammar.py); a model served
without one is parsed leniently.

    ```bash            run a command
    FILE: path         write a whole file with the fenced block that follows
    SUBMIT             finish (the required checks decide)
    REMEMBER: note     keep a note for later runs on the repository (when memory is on)

A code block right after a line naming a file in backticks (`src/a.py`) writes that file too.
A JSON tool call (`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, the format these
models were trained on) is accepted too."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from tether.models.tools import TOOLS

# By example, not by a labelled template: small models copy a template's labels and placeholders
# back as their reply (issue 19), and copy an example's shape, which is what is wanted.
INSTRUCTIONS = """Answer with exactly one action and nothing else. To run a command:
```bash
python -m pytest -q
```
To write a whole file, its complete new content:
FILE: shapes.py
```python
def area(width, height):
    return width * height
```
When the task is done:
SUBMIT"""

MEMORY_INSTRUCTIONS = """To keep a short note for later runs on this repository:
REMEMBER: the tests run with python -m pytest -q tests/"""

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
_REMEMBER = re.compile(r"^\s*\**REMEMBER\**\s*:\s*(\S[^\n]*)$", re.MULTILINE)


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
    """The action in a reply, as (tool name, arguments), or None when there is none. A reply decoded
    under the action grammar (models/grammar.py) is exactly one action; a model served without one
    may write several ("run the tests" and the file, or the file and SUBMIT): the file write is the
    substantive one and runs first (with check_after_write its checks then decide), then a command,
    then SUBMIT. An empty file block is no write: it would wipe the file (a command empties a file
    on purpose)."""
    for pattern in (_FILE, _NAMED):
        for match in pattern.finditer(text):
            if match.group(2).strip():
                return "write_file", {"path": match.group(1), "content": match.group(2) + "\n"}
    if match := _BASH.search(text):
        return "bash", {"command": match.group(1).strip()}
    if match := _SUBMIT.search(text):
        return "submit", {"summary": text[: match.start()].strip()[-500:] or "done"}
    if match := _REMEMBER.search(text):
        return "remember", {"text": match.group(1).strip()}
    return parse_json_call(text)
