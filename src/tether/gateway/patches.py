"""Codex's patch envelope (`*** Begin Patch` ... `*** End Patch`), read into the whole-file writes it
would make, so the guard judges each file as it judges a write (path rules, owners, a destructive
rewrite) and an owner approves the real diff.

    *** Begin Patch
    *** Add File: new.py          (then its lines, each starting with +)
    *** Update File: old.py       (then hunks: @@ [anchor], lines starting with ' ', - or +)
    *** Move to: renamed.py       (optional, right after an Update header)
    *** Delete File: gone.py
    *** End Patch
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

BEGIN, END = "*** Begin Patch", "*** End Patch"
HEADER = re.compile(r"^\*\*\* (Add|Update|Delete) File: (.+)$")
MOVE = "*** Move to: "
# How Codex's shell tool carries a patch: `apply_patch <<'EOF'` ... `EOF` (the heredoc may be unquoted).
HEREDOC = re.compile(r"^\s*(?:apply_patch|applypatch)\s+<<-?\s*(['\"]?)(\w+)\1\s*\n(.*)\n\s*\2\s*$", re.DOTALL)


class PatchError(ValueError):
    """A patch that is not in the envelope's grammar; the message names the line."""


@dataclass(frozen=True)
class FileChange:
    """One file's part of a patch: `content` is the file after it (None: deleted, or an update whose
    hunks do not apply to the file as it is, then `hunks` says what it meant to change)."""
    op: str  # "add", "update" or "delete"
    path: str
    content: str | None
    move_to: str | None = None
    hunks: tuple[tuple[str, str], ...] = ()  # (old text, new text) of each hunk of an update


def patch_in_command(command: str) -> str | None:
    """The patch a shell command applies with Codex's apply_patch, or None for any other command."""
    match = HEREDOC.match(command)
    return match.group(3) if match else None


def read_patch(patch: str, current: Callable[[str], str | None]) -> list[FileChange]:
    """The files a patch changes; `current(path)` is a file's text now (None: unreadable)."""
    lines = patch.strip("\n").split("\n")
    if not lines or lines[0].strip() != BEGIN or lines[-1].strip() != END:
        raise PatchError(f"a patch starts with {BEGIN!r} and ends with {END!r}")
    changes: list[FileChange] = []
    index = 1
    while index < len(lines) - 1:
        header = HEADER.match(lines[index])
        if header is None:
            raise PatchError(f"line {index + 1}: expected '*** Add File:', '*** Update File:' or "
                             f"'*** Delete File:', found {lines[index][:80]!r}")
        op, path = header.group(1).lower(), header.group(2).strip()
        body_start = index = index + 1
        while index < len(lines) - 1 and not HEADER.match(lines[index]):
            index += 1
        body = lines[body_start:index]
        if op == "delete":
            changes.append(FileChange("delete", path, None))
        elif op == "add":
            if any(line and not line.startswith("+") for line in body):
                raise PatchError(f"{path}: every line of an added file starts with '+'")
            changes.append(FileChange("add", path, "".join(line[1:] + "\n" for line in body)))
        else:
            move_to = body[0][len(MOVE):].strip() if body and body[0].startswith(MOVE) else None
            hunks = _hunks(path, body[1:] if move_to else body)
            changes.append(FileChange("update", path, _apply(current(path), hunks), move_to, hunks))
    return changes


def _hunks(path: str, body: list[str]) -> tuple[tuple[str, str], ...]:
    hunks: list[tuple[str, str]] = []
    old: list[str] = []
    new: list[str] = []
    for line in [*body, "@@"]:
        if line.startswith("@@") or line == "*** End of File":
            if old or new:
                hunks.append(("".join(old), "".join(new)))
            old, new = [], []
        elif line[:1] in (" ", "-", "+") or line == "":
            text = line[1:] + "\n"
            if line[:1] != "+":
                old.append(text)
            if line[:1] != "-":
                new.append(text)
        else:
            raise PatchError(f"{path}: a hunk line starts with ' ', '-' or '+', not {line[:40]!r}")
    if not hunks:
        raise PatchError(f"{path}: an update with no hunk")
    return tuple(hunks)


def _apply(text: str | None, hunks: tuple[tuple[str, str], ...]) -> str | None:
    """The text after the hunks, each replacing its old lines at or after the previous one; None
    when one does not apply exactly (Codex also matches loosely: the guard then judges the path)."""
    if text is None:
        return None
    position = 0
    for old, new in hunks:
        at = text.find(old, position) if old else len(text)
        if at < 0:
            return None
        text = text[:at] + new + text[at + len(old):]
        position = at + len(new)
    return text
