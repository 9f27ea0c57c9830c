"""Tool scopes: which commands may run and which paths may be read or written."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pathspec

from tether.guard.decisions import ALLOW, Decision
from tether.policy.patterns import compile_patterns
from tether.policy.schema import CommandsPolicy, WritesPolicy

_OPERATORS = {"&&", "||", ";", "|", "&", "(", ")", ";;", "|&", "\n"}
_WRAPPERS = {"env", "command", "exec", "nohup", "time", "nice", "timeout", "sudo", "xargs"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


class PathDenied(Exception):
    def __init__(self, rule: str, reason: str):
        super().__init__(reason)
        self.rule = rule
        self.reason = reason


def simple_commands(command: str) -> list[list[str]]:
    """The simple commands of a shell line, operators split off, `bash -c` bodies unfolded,
    leading VAR=value and wrappers like `env` or `timeout 5` dropped."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    commands: list[list[str]] = []
    current: list[str] = []
    for token in lexer:
        if token in _OPERATORS:
            if current:
                commands.append(current)
            current = []
        else:
            current.append(token)
    if current:
        commands.append(current)
    unfolded: list[list[str]] = []
    for words in commands:
        words = _strip_prefixes(words)
        if len(words) >= 3 and os.path.basename(words[0]) in {"bash", "sh", "zsh", "dash"} and words[1] == "-c":
            unfolded += simple_commands(words[2])
        elif words:
            unfolded.append(words)
    return unfolded


def _strip_prefixes(words: list[str]) -> list[str]:
    while words:
        head = os.path.basename(words[0])
        if _ASSIGNMENT.match(words[0]):
            words = words[1:]
        elif head in _WRAPPERS:
            words = words[1:]
            while words and (words[0].startswith("-") or _ASSIGNMENT.match(words[0])
                             or (head == "timeout" and words[0][:1].isdigit())):
                words = words[1:]
        else:
            break
    if words:
        words = [os.path.basename(words[0]), *words[1:]]
    return words


def _rule_matches(rule: str, raw: str, words: list[str]) -> bool:
    if rule.startswith("re:"):
        return re.search(rule[3:], raw) is not None
    prefix = shlex.split(rule)
    return words[: len(prefix)] == prefix


@dataclass(frozen=True)
class CommandRules:
    policy: CommandsPolicy

    def check(self, command: str) -> Decision:
        if not command.strip():
            return Decision("deny", "commands.empty", "empty command")
        try:
            commands = simple_commands(command)
        except ValueError as exc:
            return Decision("deny", "commands.parse", f"cannot parse the command: {exc}")
        for rule in self.policy.deny:
            if rule.startswith("re:") and re.search(rule[3:], command):
                return Decision("deny", "commands.deny", f"command matches deny rule {rule!r}")
            for words in commands:
                if _rule_matches(rule, " ".join(words), words):
                    return Decision("deny", "commands.deny", f"{' '.join(words)!r} matches deny rule {rule!r}")
        if self.policy.allow:
            if "$(" in command or "`" in command:
                return Decision("deny", "commands.allow",
                                "command substitution hides commands from the allow list")
            for words in commands:
                if not any(_rule_matches(rule, " ".join(words), words) for rule in self.policy.allow):
                    return Decision("deny", "commands.allow",
                                    f"{' '.join(words)!r} matches no allow rule")
        return ALLOW


def resolve_in_worktree(worktree: Path, path: str) -> str:
    """The worktree-relative POSIX path that `path` really names, symlinks resolved, or PathDenied."""
    if not path or "\0" in path:
        raise PathDenied("paths.invalid", "empty or invalid path")
    root = worktree.resolve()
    candidate = Path(path) if os.path.isabs(path) else root / path
    resolved = candidate.resolve()
    if not resolved.is_relative_to(root):
        raise PathDenied("paths.outside", f"{path!r} resolves outside the worktree")
    relative = resolved.relative_to(root).as_posix()
    if relative == ".":
        raise PathDenied("paths.invalid", f"{path!r} is the worktree itself, not a file")
    if relative.split("/")[0] == ".git":
        raise PathDenied("paths.git", f"{path!r} is inside .git, which only Tether writes")
    return relative


@dataclass
class WriteRules:
    allow: pathspec.PathSpec | None
    deny: pathspec.PathSpec

    @classmethod
    def build(cls, policy: WritesPolicy) -> WriteRules:
        return cls(compile_patterns(policy.allow) if policy.allow else None, compile_patterns(policy.deny))

    def check(self, relative: str) -> Decision:
        if self.deny.match_file(relative):
            return Decision("deny", "writes.deny", f"writing {relative!r} is denied by [writes] deny", [relative])
        if self.allow is not None and not self.allow.match_file(relative):
            return Decision("deny", "writes.allow", f"{relative!r} is outside [writes] allow", [relative])
        return ALLOW
