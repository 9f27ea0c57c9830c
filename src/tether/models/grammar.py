"""Grammars (llama.cpp's GBNF) for the text action format: a reply that can only be one action.

A constrained reply is exactly one of

    ```bash            a command
    FILE: path         a whole file: the path, then one fenced block
    SUBMIT             finished (the required checks decide)
    REMEMBER: note     a note for later runs (only when memory is on)

and nothing else: no prose around it, no second action, no copy of the format's description.
Code inside a fence is free text (any line that does not open with three backticks), because
small models cannot escape code into JSON strings (shared/notes/local-models.md)."""

from __future__ import annotations

import json
import re

# A line of a fenced block: anything but a line that starts with ``` (which closes the block).
_BODY = r'''
body ::= line*
line ::= ([^`\n] [^\n]* | "`" ([^`\n] [^\n]*)? | "``" ([^`\n] [^\n]*)?)? "\n"
lang ::= [a-z0-9+-]*
path ::= [A-Za-z0-9_.] [A-Za-z0-9_./+-]*
'''
_BASH = r'bash ::= "```bash\n" body "```"'
_FILE = r'file ::= "FILE: " {path} "\n```" lang "\n" body "```"'
_SUBMIT = 'submit ::= "SUBMIT"'
_REMEMBER = r'remember ::= "REMEMBER: " [^\n]+'
# What a path in a task looks like: a word with a file extension, optionally in backticks.
_NAMED_FILE = re.compile(r"(?:Implement|Fix|Complete|Finish|Write|Edit|Change|Update)\b[^`]*?"
                         r"`?(?<![\w./-])((?:[\w.-]+/)*[\w-]+\.[A-Za-z][A-Za-z0-9]*)\b`?")


def action_grammar(remember: bool = False) -> str:
    """Any one action (a note to remember among them, when memory is on)."""
    rules = ["root ::= bash | file | submit" + (" | remember" if remember else ""), _BASH, _FILE.format(path="path"),
             _SUBMIT, _BODY]
    return "\n".join([*rules, _REMEMBER] if remember else rules)


def remember_grammar() -> str:
    """One note to remember, nothing else (asked for when a run ends: [memory] reflect)."""
    return "\n".join(["root ::= remember", _REMEMBER])


def file_grammar(path: str) -> str:
    """A whole-file write of `path`, nothing else."""
    return "\n".join(["root ::= file", _FILE.format(path=json.dumps(path)), _BODY])


def named_file(task: str) -> str | None:
    """The file a task asks to be written, when its first line opens by naming one ("Implement
    raindrops.py so that ..."); None otherwise."""
    match = _NAMED_FILE.match(task.strip().split("\n", 1)[0])
    if match is None:
        return None
    path = match.group(1)
    return None if ".." in path.split("/") else path
