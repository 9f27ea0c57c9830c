"""Tool scopes: which commands may run and which paths may be read or written."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pathspec

from tether.guard.decisions import ALLOW, Decision
from tether.guard.shell import SimpleCommand, analyze
from tether.policy.patterns import compile_patterns
from tether.policy.schema import CommandsPolicy, WritesPolicy

# A deny rule naming the first command also stops these, which do the same thing.
_SAME_AS = {"rm": {"unlink", "shred", "rmdir"}}


class PathDenied(Exception):
    def __init__(self, rule: str, reason: str):
        super().__init__(reason)
        self.rule = rule
        self.reason = reason


def _forms(command: SimpleCommand) -> list[tuple[str | None, ...]]:
    """The command's words, and the same command under the name of what it equals (`unlink x` is
    `rm x`; `find -delete` removes files too)."""
    forms = [command.words]
    for name, equivalents in _SAME_AS.items():
        if command.name in equivalents:
            forms.append((name, *command.words[1:]))
    if command.name == "find" and "-delete" in command.words:
        forms.append(("rm",))
    return forms


def _match(rule: str, command: SimpleCommand) -> bool | None:
    """Whether a rule matches a command: True, False, or None when a computed word could match."""
    if rule.startswith("re:"):  # over the literal words; a computed command name is refused anyway
        return re.search(rule[3:], " ".join(word for word in command.words if word is not None)) is not None
    prefix = tuple(shlex.split(rule))
    verdict: bool | None = False
    for form in _forms(command):
        if len(form) < len(prefix):
            continue
        compared = form[: len(prefix)]
        if compared == prefix:
            return True
        if all(word is None or word == want for word, want in zip(compared, prefix, strict=True)):
            verdict = None
    return verdict


def _shown(command: SimpleCommand) -> str:
    return " ".join(word if word is not None else "<computed>" for word in command.words)


@dataclass(frozen=True)
class CommandRules:
    """Deny and allow rules over what a command line runs (see guard/shell.py). Both fail closed:
    a line that cannot be understood statically is refused when any rule is set."""
    policy: CommandsPolicy

    def check(self, command: str) -> Decision:
        if not command.strip():
            return Decision("deny", "commands.empty", "empty command")
        if not (self.policy.deny or self.policy.allow):
            return ALLOW
        analysis = analyze(command)
        for rule in self.policy.deny:
            if rule.startswith("re:") and re.search(rule[3:], command):
                return Decision("deny", "commands.deny", f"command matches deny rule {rule!r}")
            for simple in analysis.commands:
                matched = _match(rule, simple)
                if matched:
                    return Decision("deny", "commands.deny", f"{_shown(simple)!r} matches deny rule {rule!r}")
                if matched is None:
                    return Decision("deny", "commands.deny", f"{_shown(simple)!r} may match deny rule {rule!r}: "
                                    "part of it is computed when it runs")
        if analysis.unknowable:
            kind = "deny" if self.policy.deny else "allow"
            return Decision("deny", f"commands.{kind}",
                            f"cannot tell what this command runs ({'; '.join(dict.fromkeys(analysis.unknowable))}); "
                            f"with [commands] {kind} rules set, such commands are refused. Write it as plain commands.")
        if self.policy.allow:
            for simple in analysis.commands:
                if not any(_match(rule, simple) for rule in self.policy.allow):
                    return Decision("deny", "commands.allow", f"{_shown(simple)!r} matches no allow rule")
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


# The files that govern the agent: never its to change (a person edits the policy).
POLICY_FILES = ["/tether.toml", "/CODEOWNERS", "/.github/CODEOWNERS", "/docs/CODEOWNERS", "/.gitlab/CODEOWNERS"]


@dataclass
class WriteRules:
    allow: pathspec.PathSpec | None
    deny: pathspec.PathSpec
    policy_files: pathspec.PathSpec

    @classmethod
    def build(cls, policy: WritesPolicy, governing: tuple[str, ...] = ()) -> WriteRules:
        """`governing`: more files that govern the agent (an external agent's own settings)."""
        return cls(compile_patterns(policy.allow) if policy.allow else None, compile_patterns(policy.deny),
                   compile_patterns([*POLICY_FILES, *governing]))

    def denies(self, relative: str) -> bool:
        """Whether a path may never be written (allow aside: caches live outside any allow list)."""
        return self.policy_files.match_file(relative) or self.deny.match_file(relative)

    def check(self, relative: str) -> Decision:
        if self.policy_files.match_file(relative):
            return Decision("deny", "writes.policy", f"{relative!r} governs the agent (its policy or its owners); "
                            "a person changes it, not the agent", [relative])
        if self.deny.match_file(relative):
            return Decision("deny", "writes.deny", f"writing {relative!r} is denied by [writes] deny", [relative])
        if self.allow is not None and not self.allow.match_file(relative):
            return Decision("deny", "writes.allow", f"{relative!r} is outside [writes] allow", [relative])
        return ALLOW
