"""The guard: the one door every model call and tool call of a run passes. It decides and nothing
else: it records nothing and executes nothing, so it can be asked about a call another program
will make (an external agent's tool call, through its hooks).

    before_model  budgets, before the prompt is sent             -> allow | stop
    before_tool   budgets, tool scopes, paths, owners, destructive writes
                                                                  -> allow | deny | ask | stop
    decide        a person's (or the policy's) answer to an ask  -> allow | deny
    after_tool    what the step changed: write rules, deletions, caps, the fleet's daily lines
                                                                  -> None, or the refusal to roll back
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tether.guard.budgets import check_model_call, check_tool_call
from tether.guard.decisions import ALLOW, Decision
from tether.guard.fleet import FleetGate
from tether.guard.runlog import Approval
from tether.guard.scopes import CommandRules, PathDenied, WriteRules, resolve_in_worktree
from tether.ledger.meters import Meters
from tether.memory.rules import refusal as memory_refusal
from tether.memory.store import Door
from tether.models import ToolCall
from tether.models.tools import TOOLS, WRITE_TOOLS
from tether.policy.approvers import refusal
from tether.policy.ownership import CODEOWNERS_LOCATIONS, Ownership
from tether.policy.patterns import compile_patterns
from tether.policy.schema import BudgetPolicy, Policy
from tether.workspace.files import read_regular
from tether.workspace.git import show_file
from tether.workspace.worktree import DEFAULT_IGNORES, DiffStat

_CACHE_FOLDERS = compile_patterns([pattern for pattern in DEFAULT_IGNORES if pattern.endswith("/")])
DIFF_LIMIT = 20_000  # characters of a proposed write's diff shown to its approver
DESTRUCTIVE_MIN_LINES = 10  # smaller files (stubs) may be rewritten whole
DESTRUCTIVE_LIMIT = 1 << 20  # larger files are not compared line by line


def ownership_at(policy: Policy, repo: Path, commit: str, codeowners: bool | None = None) -> Ownership:
    """The ownership a run is judged by: the policy's protected paths and the CODEOWNERS file of
    `commit` (its base), never the worktree's copy, which the agent can write. `codeowners` instead
    of the policy's own setting (a pull request's reviewers come from CODEOWNERS either way)."""
    ownership = policy.ownership
    if codeowners is not None:
        ownership = ownership.model_copy(update={"codeowners": codeowners})
    text = None
    for location in CODEOWNERS_LOCATIONS:
        text = show_file(repo, commit, location)
        if text is not None:
            break
    return Ownership.build(ownership, text)


@dataclass
class Guard:
    policy: Policy
    ownership: Ownership
    root: Path  # the worktree the acting agent's paths are resolved in
    fleet: FleetGate | None = None
    requested_by: str | None = None  # who asked for the run: never its approver
    write_tools: str = "write_file or edit_file"  # what the agent writes a protected file with (asks its owners)
    memory: Door | None = None  # the repository's memory, when the run may write to it

    def __post_init__(self) -> None:
        self.commands = CommandRules(self.policy.commands)
        self.writes = WriteRules.build(self.policy.writes)
        self.shadows: list[Decision] = []

    # model calls ----------------------------------------------------------------------------

    def before_model(self, meters: Meters, prompt_tokens: int, prompt_usd: float, now: float | None,
                     reply_usd: float = 0.0) -> Decision:
        """Stop before a call that would break a budget: its prompt alone (tokens), or its prompt and
        the longest reply it may get (money)."""
        return self._budgets(lambda budget: check_model_call(meters, budget, prompt_tokens, prompt_usd, now,
                                                             reply_usd)) or ALLOW

    def take_shadows(self) -> list[Decision]:
        """The budget stops that shadow mode let pass since the last call (for the caller to record)."""
        shadows, self.shadows = self.shadows, []
        return shadows

    def _budgets(self, check: Callable[[BudgetPolicy], Decision | None]) -> Decision | None:
        """The first budget stop that is enforced; the shadowed ones on the way are kept in `shadows`."""
        budget = self.policy.budget
        while (decision := check(budget)) is not None:
            if not self.policy.shadowed(decision.rule):
                return decision
            self.shadows.append(decision)
            budget = budget.model_copy(update={decision.rule.removeprefix("budget."): None})
        return None

    # tool calls -----------------------------------------------------------------------------

    def before_tool(self, call: ToolCall, meters: Meters, now: float | None) -> Decision:
        """Budgets (the call is already counted in `meters`), then scopes and ownership."""
        return self._budgets(lambda budget: check_tool_call(meters, budget, now)) or self.preflight(call)

    def preflight(self, call: ToolCall) -> Decision:
        """Scopes and ownership for a call, before anything runs."""
        tool = TOOLS.get(call.name)
        if tool is None:
            return Decision("deny", "tools.unknown", f"unknown tool {call.name!r}; use one of {', '.join(TOOLS)}")
        if "_invalid_arguments" in call.arguments:
            return Decision("deny", "tools.arguments", f"arguments are not valid JSON: "
                                                       f"{call.arguments['_invalid_arguments']}")
        bad = [name for name in tool.required if not isinstance(call.arguments.get(name), str)]
        if bad:
            return Decision("deny", "tools.arguments", f"{call.name} needs string argument(s) {', '.join(bad)}")
        if call.name == "remember":
            text = call.arguments["text"]
            refused = self.memory.refusal(text) if self.memory is not None else \
                memory_refusal(text, self.policy.memory, 0, 0)
            return Decision("deny", *refused) if refused is not None else ALLOW
        if call.name == "bash":
            if "\0" in call.arguments["command"]:
                return Decision("deny", "commands.invalid", "the command contains a NUL byte, which no shell can run")
            return self.commands.check(call.arguments["command"])
        if call.name in ("read_file", *WRITE_TOOLS):
            try:
                relative = resolve_in_worktree(self.root, call.arguments["path"])
            except PathDenied as denied:
                return Decision("deny", denied.rule, denied.reason, [call.arguments["path"]])
            if call.name in WRITE_TOOLS:
                decision = self.writes.check(relative)
                if decision.verdict != "allow":
                    return decision
                owners = self.ownership.owners_of(relative)
                if owners:  # the owner sees the whole diff: a destructive write is theirs to judge
                    return Decision("ask", "ownership.protected",
                                    f"{relative!r} is owned by {', '.join(owners)}", [relative], owners)
                if call.name == "write_file":
                    destructive = self._destructive(relative, call.arguments["content"])
                    if destructive is not None:
                        return destructive
        return ALLOW

    def may_decide(self, ask: Decision, approved: bool, by: str) -> Decision | None:
        """None when `by` may give this answer to `ask`; else the refusal (anyone may deny, only an
        owner or an admin may approve, and never whoever asked for the run)."""
        refused = refusal(by, approved, ask.owners, self.policy.approvals, self.requested_by)
        return Decision("ask", *refused, ask.paths, ask.owners) if refused is not None else None

    def decide(self, ask: Decision, decided: Approval) -> Decision:
        """What an answered ask comes to: the call goes ahead, or is denied with the decider's reason."""
        approved, by, reason = decided
        if approved:
            return ALLOW
        what = "the deletion of" if ask.rule == "writes.delete" else "the write to"
        return Decision("deny", "ownership.denied", f"{by} denied {what} {', '.join(ask.paths)}"
                        + (f": {reason}" if reason else ""), ask.paths, ask.owners)

    def after_tool(self, call: ToolCall, changed: list[str], ignored: list[str] = (),
                   write_limited: bool = False, total: DiffStat | None = None,
                   deleted: list[str] = ()) -> Decision | None:
        """The refusal of a step's changes (the caller rolls them back), or None; an "ask" for
        deletions that need someone's approval. `total` is the run's whole diff after the step, needed
        when `needs_total`; `deleted`, the tracked files it deleted, needed when `judges_deletions`."""
        if write_limited:
            return Decision("deny", "sandbox.max_step_write_mb",
                            f"the command wrote more than {self.policy.sandbox.max_step_write_mb} MiB", changed)
        if call.name == "bash":
            for path in [*changed, *ignored]:
                if path in deleted:
                    continue  # judged as a deletion, below (only passed when deletions are judged)
                refusal = self._path_refusal(path, "the command")
                if refusal is not None:
                    return refusal
        if deleted:
            refusal = self._deletion(deleted)
            if refusal is not None:
                return refusal
        if total is None:
            return None
        caps = self.policy.writes
        files = sorted(set(total.paths))
        if caps.max_files is not None and len(files) > caps.max_files:
            return Decision("deny", "writes.max_files",
                            f"the run would change {len(files)} files; the cap is {caps.max_files}", files)
        if caps.max_lines is not None and total.lines > caps.max_lines:
            return Decision("deny", "writes.max_lines",
                            f"the run would change {total.lines} lines; the cap is {caps.max_lines}", files)
        if self.fleet is not None:
            over = self.fleet.count_lines(total.lines)
            if over is not None:
                return Decision("deny", "fleet.max_lines_per_day_per_repo", over, total.paths)
        return None

    @property
    def deletion_rule(self) -> str:
        """`[writes] delete`; unset, "deny" when a `[commands] deny` rule names rm, else "allow"."""
        if self.policy.writes.delete is not None:
            return self.policy.writes.delete
        return "deny" if any(_names_rm(rule) for rule in self.policy.commands.deny) else "allow"

    @property
    def judges_deletions(self) -> bool:
        return self.deletion_rule != "allow"

    def _deletion(self, deleted: list[str]) -> Decision | None:
        """Deleting tracked files, by whatever means: the policy's rule, then the write rules and
        owners of each path (a deletion is a write)."""
        paths = sorted(deleted)
        shown = ", ".join(paths[:10]) + (f" and {len(paths) - 10} more" if len(paths) > 10 else "")
        for path in paths:
            decision = self.writes.check(path)
            if decision.verdict != "allow":
                return Decision("deny", decision.rule, f"the step deleted {path!r}: {decision.reason}", [path])
        rule = self.deletion_rule
        if rule == "deny":
            why = ("[writes] delete = \"deny\"" if self.policy.writes.delete else
                   "a [commands] deny rule names rm, so deleting files is denied however it is done")
            return Decision("deny", "writes.delete", f"the step deleted tracked files ({shown}); {why}", paths)
        owners = list(dict.fromkeys(owner for path in paths for owner in self.ownership.owners_of(path)))
        owners = owners or list(self.policy.approvals.admins)
        if rule == "ask" and not owners:
            return Decision("deny", "writes.delete", f"the step deleted tracked files ({shown}); [writes] delete "
                            "= \"ask\", but the files have no owners and the policy names no admins to ask", paths)
        if rule == "ask":
            return Decision("ask", "writes.delete", f"the step deletes tracked files ({shown}), which needs the "
                            f"approval of {', '.join(owners)}", paths, owners)
        return None

    @property
    def needs_total(self) -> bool:
        """Whether after_tool wants the run's whole diff (write caps or the fleet's daily lines)."""
        caps = self.policy.writes
        return caps.max_files is not None or caps.max_lines is not None or self.fleet is not None

    def watched_ignored(self, paths: list[str]) -> list[str]:
        """The ignored files among `paths` that a deny rule or an owner cares about. A file in a tool's
        cache folder is judged as that folder, which belongs to whoever owns where it sits:
        `.pytest_cache/README.md` is no one's README, `secure/__pycache__/` is secure/'s."""
        return [path for path in paths if (judged := _cache_folder(path) or path)
                and (self.writes.denies(judged) or self.ownership.owners_of(judged))]

    @property
    def watches_ignored(self) -> bool:
        """Whether any ignored file can matter (an ignored file is never delivered: only deny rules
        and owners care about one)."""
        return bool(self.policy.writes.deny or self.ownership.has_owners)

    def proposed_diff(self, call: ToolCall) -> str:
        """The unified diff a write would make, for the person asked to approve it."""
        if call.name not in WRITE_TOOLS:
            return ""
        relative = resolve_in_worktree(self.root, call.arguments["path"])
        try:
            data, size = read_regular(self.root / relative, DIFF_LIMIT * 4)
            before = data.decode("utf-8", "replace") if size <= len(data) else None
        except FileNotFoundError:
            before = ""
        except OSError as exc:
            return f"(cannot show {relative}: {exc.strerror or exc})"
        if before is None:
            return f"({relative} is larger than {DIFF_LIMIT * 4} bytes; see the action)"
        if call.name == "write_file":
            return _unified(relative, before, call.arguments["content"])
        if before.count(call.arguments["old"]) != 1:
            return f"(the edit does not apply: `old` must occur once in {relative})"
        return _unified(relative, before, before.replace(call.arguments["old"], call.arguments["new"], 1))

    def _path_refusal(self, path: str, actor: str) -> Decision | None:
        """Write rules and ownership for a path changed by anything but the write tools (which ask)."""
        decision = self.writes.check(path)
        if decision.verdict != "allow":
            return Decision("deny", decision.rule, f"{actor} wrote {path!r}: {decision.reason}", [path])
        owners = self.ownership.owners_of(path)
        if owners:
            return Decision("deny", "ownership.protected",
                            f"{actor} changed {path!r}, owned by {', '.join(owners)}; use "
                            f"{self.write_tools}, which ask the owners", [path], owners)
        return None

    def _destructive(self, relative: str, content: str) -> Decision | None:
        """A whole-file write that throws away most of an existing file."""
        share = self.policy.writes.max_removed_share
        if share is None:
            return None
        try:
            data, size = read_regular(self.root / relative, DESTRUCTIVE_LIMIT)
        except OSError:
            return None  # a new file (or not a file: the write itself will say so)
        if size > len(data):
            return None
        before = data.decode("utf-8", "replace").splitlines()
        if len(before) < DESTRUCTIVE_MIN_LINES:
            return None
        kept = sum(block.size for block in difflib.SequenceMatcher(
            None, before, content.splitlines(), autojunk=False).get_matching_blocks())
        removed = len(before) - kept
        if removed <= share * len(before):
            return None
        return Decision("deny", "writes.max_removed_share",
                        f"write_file would remove {removed} of the {len(before)} lines of {relative!r} (more than "
                        f"{share:.0%}, [writes] max_removed_share); change it with edit_file, or write the whole "
                        "file with what must stay in it", [relative])


def _cache_folder(path: str) -> str | None:
    """The tool's cache folder `path` is in (`a/__pycache__` for `a/__pycache__/b.pyc`), if any."""
    parts = path.split("/")
    for depth in range(len(parts) - 1):
        if _CACHE_FOLDERS.match_file("/".join(parts[: depth + 1]) + "/"):
            return "/".join(parts[: depth + 1])
    return None


def _names_rm(rule: str) -> bool:
    """Whether a deny rule denies `rm` (the word itself, or a regex matching a plain `rm` call)."""
    if rule.startswith("re:"):
        return re.search(rule[3:], "rm file") is not None
    words = rule.split()
    return bool(words) and words[0] in ("rm", "unlink", "shred")


def describe_action(call: ToolCall) -> str:
    if call.name == "edit_file":
        return f"edit {call.arguments['path']}: replace {len(call.arguments['old'])} chars"
    if call.name == "write_file":
        return f"write {call.arguments['path']} ({len(call.arguments['content'])} chars)"
    return f"{call.name} {json.dumps(call.arguments)[:200]}"


def _unified(path: str, before: str, after: str) -> str:
    lines = difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                 f"a/{path}", f"b/{path}")
    text = "".join(lines)
    return text if len(text) <= DIFF_LIMIT else text[:DIFF_LIMIT] + f"\n[... {len(text) - DIFF_LIMIT} more characters]"
