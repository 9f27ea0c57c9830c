"""The guard: the one door every model call and tool call of a run passes.

It checks budgets before a model call, scopes and ownership before a tool call, write rules and
caps after it (rolling the step back when they break), feeds every event to the brakes, and
records each decision in the run's event log."""

from __future__ import annotations

import difflib
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from tether.guard.brakes import BrakeHit, Brakes
from tether.guard.budgets import check_model_call, check_tool_call, check_wall
from tether.guard.decisions import ALLOW, Decision, RoleDone, RunFailed, RunHeld, RunPaused, RunStopped, RunSucceeded
from tether.guard.fleet import FleetGate
from tether.guard.scopes import CommandRules, PathDenied, WriteRules, resolve_in_worktree
from tether.ledger import Ledger, StoredEvent, canonical_json
from tether.ledger import events as ev
from tether.ledger.meters import Meters
from tether.models import Message, ModelError, ModelResponse, Provider, ToolCall, ToolSpec, TransientModelError
from tether.models.base import Usage, estimate_tokens
from tether.models.prices import price_usd
from tether.models.tools import TOOLS, WRITE_TOOLS
from tether.policy.approvers import may_approve
from tether.policy.ownership import Ownership
from tether.policy.schema import Policy
from tether.workspace.files import read_regular
from tether.workspace.sandbox import ExecResult, Sandbox
from tether.workspace.worktree import DiffStat, WorkspaceTampered, Worktree

# File ctimes come from the kernel's coarse clock, which may lag time.time_ns() by a tick or so.
CTIME_SLACK_NS = 50_000_000
DIFF_LIMIT = 20_000  # characters of a proposed write's diff shown to its approver
DESTRUCTIVE_MIN_LINES = 10  # smaller files (stubs) may be rewritten whole
DESTRUCTIVE_LIMIT = 1 << 20  # larger files are not compared line by line
# An approval decision: (approved, who decided, why).
Approval = tuple[bool, str, str]
Approver = Callable[[dict[str, Any]], Approval]
UNATTENDED_DECIDER = "tether (unattended)"
EventSink = Callable[[StoredEvent, Meters], None]


def event_key(payload: ev.Payload) -> tuple[Any, ...]:
    """What makes an event the same event when a crashed run is resumed and redoes its last step."""
    return (payload.type, *(getattr(payload, name, None) for name in ("step", "call_id", "attempt", "name", "rule")))


# Markers of a run's life that may legitimately repeat; everything else is written at most once.
REPEATABLE = {ev.EventType.RUN_CONTINUED, ev.EventType.RUN_RESUMED, ev.EventType.RUN_PAUSED,
              ev.EventType.APPROVAL_DECIDED}


@dataclass(frozen=True)
class ToolOutcome:
    ok: bool
    observation: str
    exit_code: int | None = None
    output_digest: str | None = None
    duration_s: float = 0.0
    finished: bool = False  # submit with every required check passing
    write_limited: bool = False  # the command was killed for writing more than the step may
    rework: bool = False  # a submit the required checks sent back


@dataclass(frozen=True)
class CheckResult:
    name: str
    required: bool
    passed: bool
    exit_code: int
    output: str


@dataclass
class Guard:
    run_id: str
    ledger: Ledger
    policy: Policy
    provider: Provider
    worktree: Worktree
    sandbox: Sandbox
    ownership: Ownership
    base_tree: str
    on_event: EventSink | None = None
    approver: Approver | None = None
    fleet: FleetGate | None = None
    meters: Meters = field(init=False)
    brakes: Brakes = field(init=False)
    tree: str = field(init=False)
    decided: dict[str, Approval] = field(default_factory=dict)
    recorded: set[tuple[Any, ...]] = field(default_factory=set)  # event keys already in the log
    pending_hit: tuple[str | None, BrakeHit] | None = None  # (call id, brake) fired just before a crash
    submitted: bool = False  # a submit whose checks passed, recorded just before a crash
    # Roles (the orchestrated architecture): the active role's name goes on every event; an executor
    # hands its subtask over where the harness would end the run; the work of executors that handed
    # over but is not integrated yet still counts against the run's write caps.
    role: str | None = None
    hands_over: bool = False
    role_step_limit: int | None = None  # an executor hands over when the run's step count reaches this
    role_trees: dict[str | None, str] = field(default_factory=dict)
    unintegrated: list[DiffStat] = field(default_factory=list)
    last_reply: str = ""

    def __post_init__(self) -> None:
        self.meters = Meters()
        self.brakes = Brakes(self.policy.brakes)
        self.tree = self.base_tree
        self.commands = CommandRules(self.policy.commands)
        self.writes = WriteRules.build(self.policy.writes)

    # state ----------------------------------------------------------------------------------

    def replay_state(self, events: list[StoredEvent]) -> None:
        """Rebuild meters, brakes, the current tree, approval decisions and what has been recorded
        from the event log, so a continued or resumed run goes on exactly where it was."""
        names: dict[str, str] = {}
        for event in events:
            payload = event.data
            self.meters.observe(payload, event.ts)
            hit = self.brakes.observe(payload)
            if hit is not None:
                self.pending_hit = (getattr(payload, "call_id", None), hit)
            if payload.type not in REPEATABLE:
                self.recorded.add(event_key(payload))
            if isinstance(payload, ev.ToolCall):
                names[payload.call_id] = payload.name
            elif isinstance(payload, ev.ToolResult | ev.Merge):
                if payload.tree:
                    self.tree = payload.tree
                    self.role_trees[payload.role] = payload.tree
                self.submitted = isinstance(payload, ev.ToolResult) and names.get(payload.call_id) == "submit" \
                    and bool(payload.ok)
            elif isinstance(payload, ev.Brake | ev.RunFinished):
                self.pending_hit = None
            elif isinstance(payload, ev.ApprovalDecided):
                self.decided[payload.call_id] = (payload.approved, payload.by, payload.reason)

    def record(self, payload: ev.Payload) -> BrakeHit | None:
        """Append an event (unless a resumed step already recorded it) and feed the brakes."""
        if self.role is not None:
            payload = payload.model_copy(update={"role": self.role})
        if payload.type not in REPEATABLE:
            key = event_key(payload)
            if key in self.recorded:
                return None
            self.recorded.add(key)
        event = self.ledger.record(self.run_id, payload)
        self.meters.observe(payload, event.ts)
        hit = self.brakes.observe(payload)
        if self.on_event is not None:
            self.on_event(event, self.meters)
        return hit

    def use_worktree(self, role: str | None, worktree: Worktree, sandbox: Sandbox, tree: str,
                     hands_over: bool = False) -> None:
        """Act as `role` in `worktree` from now on; meters, brakes, budgets and caps stay the run's."""
        self.role, self.worktree, self.sandbox, self.tree, self.hands_over = role, worktree, sandbox, tree, hands_over

    def _stop(self, decision: Decision, call: ToolCall | None = None) -> RunStopped:
        self.record(decision.as_event(self.meters.steps, call.id if call is not None else None))
        return RunStopped(decision.reason, decision.rule)

    # model calls ----------------------------------------------------------------------------

    def model_call(self, messages: list[Message], tools: list[ToolSpec]) -> ModelResponse:
        step = self.meters.steps + 1
        if self.hands_over and self.role_step_limit is not None and step > self.role_step_limit:
            raise RoleDone(f"handed over: {self.role} used its steps")
        prompt_text = canonical_json(messages)
        prompt_tokens = estimate_tokens(prompt_text)
        prompt_usd = self._cost(Usage(prompt_tokens, 0)) or 0.0
        stop = check_model_call(self.meters, self.policy.budget, prompt_tokens, prompt_usd, time.time())
        if stop is not None:
            raise self._stop(stop)
        if self.fleet is None:
            return self._model_call(step, messages, tools, prompt_text, prompt_tokens)
        self.fleet.before_step(self._cost(Usage(prompt_tokens, self.policy.agent.max_output_tokens)) or 0.0)
        spent_before = self.meters.usd
        try:
            return self._model_call(step, messages, tools, prompt_text, prompt_tokens)
        finally:
            self.fleet.after_step(self.meters.usd - spent_before)

    def _model_call(self, step: int, messages: list[Message], tools: list[ToolSpec], prompt_text: str,
                    prompt_tokens: int) -> ModelResponse:
        self.record(ev.ModelRequest(step=step, messages=len(messages), prompt_tokens_est=prompt_tokens,
                                    messages_digest=hashlib.sha256(prompt_text.encode()).hexdigest()))
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                response = self.provider.complete(messages, tools, self.policy.agent.max_output_tokens)
                break
            except TransientModelError as exc:
                delay = min(60.0, exc.retry_after_s or self.policy.agent.retry_base_s * 2 ** (attempt - 1))
                give_up = attempt > self.policy.agent.max_retries
                self.record(ev.ModelError(step=step, attempt=attempt, error=str(exc), transient=True,
                                          retry_in_s=None if give_up else delay))
                if give_up:  # not the task's fault: hold the run and try again later
                    raise RunHeld(f"model kept failing after {attempt} attempts: {exc}", "model.transient",
                                  "waiting", time.time() + delay) from exc
                time.sleep(delay)
                wall = check_wall(self.meters, self.policy.budget, time.time())
                if wall is not None:
                    raise self._stop(wall) from exc
            except ModelError as exc:
                self.record(ev.ModelError(step=step, attempt=attempt, error=str(exc), transient=False))
                raise RunFailed(str(exc), "model.error") from exc
        latency = time.perf_counter() - started
        if self.role is not None:  # call ids must be unique in the run, and each role counts from 0
            response = replace(response, tool_calls=[replace(c, id=f"{self.role}.{c.id}")
                                                     for c in response.tool_calls])
        cost = response.cost_usd if response.cost_usd is not None else self._cost(response.usage)
        hit = self.record(ev.ModelResponse(
            step=step, model=response.model, content=response.content,
            tool_calls=[ev.RecordedCall(**call.as_dict()) for call in response.tool_calls],
            usage=ev.RecordedUsage(input_tokens=response.usage.input_tokens,
                                   output_tokens=response.usage.output_tokens, estimated=response.usage.estimated),
            cost_usd=cost or 0.0, price_known=cost is not None, latency_s=round(latency, 4),
        ))
        self.last_reply = response.content  # the model's stated reason, for an approver
        if hit is not None:  # e.g. too many replies without an action
            raise self.brake(None, hit)
        return response

    def _cost(self, usage: Usage) -> float | None:
        scheme, _, model = self.provider.name.partition(":")
        if scheme not in ("openai", "anthropic"):
            return 0.0  # scripted, local and replayed models cost no money
        return price_usd(model, scheme, usage)

    # tool calls -----------------------------------------------------------------------------

    def tool_call(self, call: ToolCall, execute: Callable[[ToolCall], ToolOutcome]) -> str:
        step = self.meters.steps
        hit = self.record(ev.ToolCall(step=step, call_id=call.id, name=call.name, arguments=call.arguments))
        if hit is not None:
            raise self._brake(call, hit)
        stop = check_tool_call(self.meters, self.policy.budget, time.time())
        if stop is not None:
            self._unexecuted(call, f"Not run: {stop.reason}.")
            raise self._stop(stop, call)
        decision = self.preflight(call)
        if decision.verdict == "ask":
            decision = self._approval(step, call, decision)
        if decision.verdict == "deny":
            self.record(decision.as_event(step, call.id))
            observation = f"Denied by policy ({decision.rule}): {decision.reason}"
            hit = self._unexecuted(call, observation)
            if hit is not None:
                raise self._brake(call, hit)
            return observation
        started_ns = time.time_ns() - CTIME_SLACK_NS
        outcome = execute(call)
        observation = outcome.observation
        previous = self.tree
        try:
            # read_file cannot change the worktree; everything else may (checks cannot: see run_checks).
            tree = previous if call.name == "read_file" else self.worktree.snapshot()
        except WorkspaceTampered as exc:
            self.worktree.restore(previous)
            self._unexecuted(call, f"{observation}\n\n[tether] This step was rolled back and the run stopped: {exc}")
            raise self._stop(Decision("stop", "workspace.git_pointer", str(exc)), call) from exc
        changed: list[str] = []
        refusal: Decision | None = None
        ignored = self._ignored_changes(started_ns) if call.name == "bash" else []
        if tree != previous or ignored or outcome.write_limited:
            if call.name in WRITE_TOOLS:  # the guard resolved the one path these tools write
                changed = [resolve_in_worktree(self.worktree.path, call.arguments["path"])]
            elif tree != previous:
                changed = self.worktree.diff(previous, tree).paths
            refusal = self._check_writes(call, changed, tree, ignored, outcome.write_limited)
            if refusal is not None:
                self.worktree.restore(previous)
                self.worktree.remove_files(ignored)
                self.record(refusal.as_event(step, call.id, rolled_back=True))
                observation += f"\n\n[tether] This step was rolled back: {refusal.reason}"
                tree, changed = previous, []
                outcome = ToolOutcome(False, observation, outcome.exit_code, outcome.output_digest, outcome.duration_s)
        self.tree = tree
        hit = self.record(ev.ToolResult(
            step=step, call_id=call.id, executed=True, ok=outcome.ok, exit_code=outcome.exit_code,
            output_digest=outcome.output_digest, duration_s=round(outcome.duration_s, 4), tree=tree,
            changed=changed, observation=observation, rework=outcome.rework,
        ))
        if self.fleet is not None and refusal is not None and refusal.rule == "fleet.max_lines_per_day_per_repo":
            raise self.fleet.over_lines(refusal.reason)
        if outcome.finished:
            if self.hands_over:
                # a submitting executor ran no checks: the reviewer judges everyone's work together
                raise RoleDone("handed over: " + ("it submitted" if call.name == "submit" else
                                                  "the required checks pass"))
            raise RunSucceeded("all required checks passed")
        if hit is not None:
            raise self._brake(call, hit)
        return observation

    def _unexecuted(self, call: ToolCall, observation: str) -> BrakeHit | None:
        return self.record(ev.ToolResult(
            step=self.meters.steps, call_id=call.id, executed=False, ok=False, exit_code=None, output_digest=None,
            duration_s=0.0, tree=self.tree, changed=[], observation=observation, rework=False,
        ))

    def _brake(self, call: ToolCall, hit: BrakeHit) -> RunStopped:
        return self.brake(call.id, hit)

    def brake(self, call_id: str | None, hit: BrakeHit) -> RunStopped:
        self.record(ev.Brake(detector=hit.detector, reason=hit.reason, evidence=hit.evidence, call_id=call_id,
                             step=self.meters.steps))
        return RunStopped(f"brake {hit.detector}: {hit.reason}", f"brakes.{hit.detector}")

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
            return Decision("deny", "tools.arguments",
                            f"{call.name} needs string argument(s) {', '.join(bad)}")
        if call.name == "bash":
            if "\0" in call.arguments["command"]:
                return Decision("deny", "commands.invalid", "the command contains a NUL byte, which no shell can run")
            return self.commands.check(call.arguments["command"])
        if call.name in ("read_file", *WRITE_TOOLS):
            try:
                relative = resolve_in_worktree(self.worktree.path, call.arguments["path"])
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

    def _approval(self, step: int, call: ToolCall, ask: Decision) -> Decision:
        if call.id not in self.decided:
            timeout = self.policy.approvals.timeout_s
            request = ev.ApprovalRequested(
                verdict=ask.verdict, rule=ask.rule, reason=ask.reason, paths=ask.paths, owners=ask.owners,
                call_id=call.id, step=step, tool=call.name, action=_describe_action(call),
                diff=self._proposed_diff(call), model_reason=self.last_reply[-2000:],
                deadline=time.time() + timeout if timeout else None)
            self.record(ask.as_event(step, call.id))
            self.record(request)
            by_person = True
            if self.approver is not None:
                approved, by, reason = self.approver(request.as_json())
                if approved and not may_approve(by, ask.owners, self.policy.approvals):
                    refusal = f"{by} may not approve: owners are {', '.join(ask.owners)} (or an admin)"
                    self.record(Decision("ask", "approvals.not_owner", refusal, ask.paths, ask.owners)
                                .as_event(step, call.id))
                    raise RunPaused(f"{refusal}; the run waits for an owner's decision", ask.rule)
            elif self.policy.approvals.unattended == "deny":
                approved, by, reason = False, UNATTENDED_DECIDER, "nobody attends this run (approvals.unattended)"
                by_person = False
            else:
                raise RunPaused(f"waiting for approval from {', '.join(ask.owners)} to write "
                                f"{', '.join(ask.paths)}", ask.rule)
            self.record(ev.ApprovalDecided(call_id=call.id, approved=approved, by=by, reason=reason,
                                           by_person=by_person))
            self.decided[call.id] = (approved, by, reason)
        approved, by, reason = self.decided[call.id]
        if approved:
            return ALLOW
        return Decision("deny", "ownership.denied", f"{by} denied the write to {', '.join(ask.paths)}"
                        + (f": {reason}" if reason else ""), ask.paths, ask.owners)

    def _ignored_changes(self, since_ns: int) -> list[str]:
        """Ignored files changed since `since_ns` where a path rule could care (none otherwise)."""
        if not (self.policy.writes.deny or self.ownership.has_owners):
            return []  # an ignored file is never delivered: only deny rules and owners care about it
        return [path for path in self.worktree.ignored_changed_since(since_ns)
                if self.writes.denies(path) or self.ownership.owners_of(path)]

    def _path_refusal(self, path: str, actor: str) -> Decision | None:
        """Write rules and ownership for a path changed by anything but the write tools (which ask)."""
        decision = self.writes.check(path)
        if decision.verdict != "allow":
            return Decision("deny", decision.rule, f"{actor} wrote {path!r}: {decision.reason}", [path])
        owners = self.ownership.owners_of(path)
        if owners:
            return Decision("deny", "ownership.protected",
                            f"{actor} changed {path!r}, owned by {', '.join(owners)}; use "
                            "write_file or edit_file, which ask the owners", [path], owners)
        return None

    def _destructive(self, relative: str, content: str) -> Decision | None:
        """A whole-file write that throws away most of an existing file."""
        share = self.policy.writes.max_removed_share
        if share is None:
            return None
        try:
            data, size = read_regular(self.worktree.path / relative, DESTRUCTIVE_LIMIT)
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

    def _proposed_diff(self, call: ToolCall) -> str:
        """The unified diff a write would make, for the person asked to approve it."""
        if call.name not in WRITE_TOOLS:
            return ""
        relative = resolve_in_worktree(self.worktree.path, call.arguments["path"])
        try:
            data, size = read_regular(self.worktree.path / relative, DIFF_LIMIT * 4)
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

    def _check_writes(self, call: ToolCall, changed: list[str], tree: str, ignored: list[str] = (),
                      write_limited: bool = False) -> Decision | None:
        if write_limited:
            return Decision("deny", "sandbox.max_step_write_mb",
                            f"the command wrote more than {self.policy.sandbox.max_step_write_mb} MiB", changed)
        if call.name == "bash":
            for path in [*changed, *ignored]:
                refusal = self._path_refusal(path, "the command")
                if refusal is not None:
                    return refusal
        caps = self.policy.writes
        if caps.max_files is None and caps.max_lines is None and self.fleet is None:
            return None
        total = combined([self.worktree.diff(self.base_tree, tree), *self.unintegrated])
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

    # checks ---------------------------------------------------------------------------------

    def run_checks(self, call_id: str) -> list[CheckResult]:
        """Run the checks; whatever they change in the worktree is undone afterwards and recorded, so
        code the agent wrote (a conftest.py, a test helper) cannot write through them."""
        before = self.worktree.snapshot()
        started_ns = time.time_ns() - CTIME_SLACK_NS
        try:
            return self._run_checks(call_id)
        finally:
            try:
                after = self.worktree.snapshot()
            except WorkspaceTampered as exc:  # a check rewrote the .git pointer (no sandbox): put back, stop
                self.worktree.restore(before)
                raise self._stop(Decision("stop", "workspace.git_pointer", str(exc))) from exc
            ignored = self._ignored_changes(started_ns)
            if after != before or ignored:
                changed = [*self.worktree.diff(before, after).paths, *ignored]
                self.worktree.restore(before)
                self.worktree.remove_files(ignored)
                self.record(Decision("deny", "checks.wrote", f"the checks changed {', '.join(changed[:10])}; "
                                     "checks may not change the delivered tree, so these changes were undone",
                                     changed).as_event(self.meters.steps, call_id, rolled_back=True))

    def _run_checks(self, call_id: str) -> list[CheckResult]:
        results = []
        for check in self.policy.checks:
            self.record(ev.CheckStarted(name=check.name, command=check.command, call_id=call_id))
            result: ExecResult = self.sandbox.run(check.command, check.timeout_s)
            passed = result.exit_code == 0 and not result.timed_out
            self.record(ev.CheckFinished(
                name=check.name, call_id=call_id, required=check.required, passed=passed,
                exit_code=result.exit_code, timed_out=result.timed_out, duration_s=round(result.duration_s, 4),
                output_digest=result.output_digest, output_tail=result.output[-2000:],
            ))
            results.append(CheckResult(check.name, check.required, passed, result.exit_code, result.output))
        return results


def combined(diffs: list[DiffStat]) -> DiffStat:
    """Several worktrees' diffs from the same base as one: lines add up, a file counts once."""
    if len(diffs) == 1:
        return diffs[0]
    return DiffStat([change for diff in diffs for change in diff.files])


def _unified(path: str, before: str, after: str) -> str:
    lines = difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                 f"a/{path}", f"b/{path}")
    text = "".join(lines)
    return text if len(text) <= DIFF_LIMIT else text[:DIFF_LIMIT] + f"\n[... {len(text) - DIFF_LIMIT} more characters]"


def _describe_action(call: ToolCall) -> str:
    if call.name == "edit_file":
        return f"edit {call.arguments['path']}: replace {len(call.arguments['old'])} chars"
    if call.name == "write_file":
        return f"write {call.arguments['path']} ({len(call.arguments['content'])} chars)"
    return f"{call.name} {json.dumps(call.arguments)[:200]}"

