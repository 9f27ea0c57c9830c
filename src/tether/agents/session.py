"""A run in motion: the agent's model calls and tool calls go through here. Each is put to the guard,
its outcome recorded in the run's log, and a tool call executed in the worktree and sandbox
(rolled back when the guard refuses what it changed). Roles of a multi-role architecture act
inside a `role` scope, which restores the run's own worktree, sandbox and provider on exit."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from tether.guard.brakes import BrakeHit
from tether.guard.budgets import check_wall, wall_deadline
from tether.guard.decisions import Decision, RoleDone, RunFailed, RunHeld, RunPaused, RunStopped, RunSucceeded
from tether.guard.guard import DIFF_LIMIT, Guard, describe_action
from tether.guard.runlog import Approval, RunLog
from tether.guard.scopes import resolve_in_worktree
from tether.ledger import canonical_json
from tether.ledger import events as ev
from tether.ledger.meters import Meters
from tether.models import Message, ModelError, ModelResponse, Provider, ToolCall, ToolSpec
from tether.models.base import Usage, estimate_tokens, seconds_until
from tether.models.prices import cost_of, estimate_usd
from tether.models.retry import RetriesExhausted, complete_with_retries
from tether.models.tools import UNCHANGING_TOOLS, WRITE_TOOLS
from tether.policy.schema import Policy
from tether.workspace.export import checked_out
from tether.workspace.project import ProjectEnv
from tether.workspace.sandbox import ExecResult, Sandbox
from tether.workspace.worktree import DiffStat, WorkspaceTampered, Worktree

# File ctimes come from the kernel's coarse clock, which may lag time.time_ns() by a tick or so.
CTIME_SLACK_NS = 50_000_000
Approver = Callable[[dict[str, Any]], Approval]
UNATTENDED_DECIDER = "tether (unattended)"


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
    timed_out: bool = False  # the command ran past its timeout and was killed


@dataclass(frozen=True)
class CheckResult:
    name: str
    required: bool
    passed: bool
    exit_code: int
    output: str


@dataclass
class Session:
    log: RunLog
    guard: Guard
    policy: Policy
    provider: Provider
    worktree: Worktree
    sandbox: Sandbox
    base_tree: str
    approver: Approver | None = None
    tree: str = ""  # the acting worktree's tree after the last step
    # An executor of the orchestrated architecture hands its subtask over where the harness would end
    # the run, and does so when the run's step count reaches its step limit. The work of executors that
    # handed over but is not integrated yet still counts against the run's write caps.
    hands_over: bool = False
    step_limit: int | None = None
    unintegrated: list[DiffStat] = field(default_factory=list)
    last_reply: str = ""  # the model's stated reason, for an approver
    attempt: int = 0  # of [agent] attempts
    project: ProjectEnv | None = None  # the project's environment, built from the base commit
    environment_inputs: list[str] = field(default_factory=list)  # the manifests it was built from
    replaying: str | None = None  # the recorded run a replay follows (what it measured is not measured again)

    def __post_init__(self) -> None:
        self.tree = self.tree or self.base_tree

    @property
    def run_id(self) -> str:
        return self.log.run_id

    @property
    def meters(self) -> Meters:
        return self.log.meters

    def record(self, payload: ev.Payload) -> BrakeHit | None:
        return self.log.record(payload)

    @contextmanager
    def role(self, name: str, worktree: Worktree | None = None, sandbox: Sandbox | None = None,
             provider: Provider | None = None, tree: str | None = None, hands_over: bool = False,
             step_limit: int | None = None) -> Iterator[None]:
        """Act as `name` (in its own worktree, with the provider's turns for it) inside the block; the
        run's meters, brakes, budgets and caps stay shared. All of it is restored on exit, except the
        tree of a role that worked in the run's own worktree."""
        saved = (self.log.role, self.worktree, self.sandbox, self.provider, self.tree, self.hands_over,
                 self.step_limit, self.guard.root)
        self.log.role = name
        self.worktree = worktree or self.worktree
        self.sandbox = sandbox or self.sandbox
        self.provider = (provider or self.provider).for_role(name)
        self.tree = tree or self.tree
        self.hands_over, self.step_limit = hands_over, step_limit
        self.guard.root = self.worktree.path
        try:
            yield
        finally:
            # A role acting in the run's own worktree leaves its tree behind: it is the run's work.
            kept_tree = self.tree if worktree is None else saved[4]
            (self.log.role, self.worktree, self.sandbox, self.provider, self.tree, self.hands_over,
             self.step_limit, self.guard.root) = saved
            self.tree = kept_tree

    @contextmanager
    def past_work_budgets(self) -> Iterator[None]:
        """For the reflection after the run's end ([memory] reflect): the step, tool-call and time
        budgets bound the work, which is over; the money and token budgets still hold."""
        saved = self.policy
        budget = saved.budget.model_copy(update={"max_steps": None, "max_tool_calls": None, "max_wall_s": None})
        self.policy = self.guard.policy = saved.model_copy(update={"budget": budget})
        try:
            yield
        finally:
            self.policy = self.guard.policy = saved

    def wall_deadline(self) -> float | None:
        if self.policy.shadowed("budget.max_wall_s"):
            return None
        return wall_deadline(self.meters, self.policy.budget, time.time())

    def _record_shadows(self, call_id: str | None = None) -> None:
        for shadow in self.guard.take_shadows():
            self.log.shadow(shadow.rule, shadow.reason, call_id)

    def stop(self, decision: Decision, call: ToolCall | None = None) -> RunStopped:
        self.record(decision.as_event(self.meters.steps, call.id if call is not None else None))
        return RunStopped(decision.reason, decision.rule)

    def brake(self, call_id: str | None, hit: BrakeHit) -> RunStopped:
        self.record(ev.Brake(detector=hit.detector, reason=hit.reason, evidence=hit.evidence, call_id=call_id,
                             step=self.meters.steps))
        return RunStopped(f"brake {hit.detector}: {hit.reason}", f"brakes.{hit.detector}")

    # model calls ----------------------------------------------------------------------------

    def model_call(self, messages: list[Message], tools: list[ToolSpec]) -> ModelResponse:
        step = self.meters.steps + 1
        if self.hands_over and self.step_limit is not None and step > self.step_limit:
            raise RoleDone(f"handed over: {self.log.role} used its steps")
        prompt_text = canonical_json(messages)
        prompt_tokens = estimate_tokens(prompt_text)
        prompt_usd = estimate_usd(self.provider.name, Usage(prompt_tokens, 0))
        reply_usd = estimate_usd(self.provider.name, Usage(0, self.policy.agent.max_output_tokens))
        decision = self.guard.before_model(self.meters, prompt_tokens, prompt_usd, time.time(), reply_usd)
        self._record_shadows()
        if decision.verdict == "stop":
            raise self.stop(decision)
        fleet = self.guard.fleet
        if fleet is None:
            return self._model_call(step, messages, tools, prompt_text, prompt_tokens)
        fleet.before_step(estimate_usd(self.provider.name, Usage(prompt_tokens, self.policy.agent.max_output_tokens)))
        spent_before = self.meters.usd
        try:
            return self._model_call(step, messages, tools, prompt_text, prompt_tokens)
        finally:
            fleet.after_step(self.meters.usd - spent_before)

    def _model_call(self, step: int, messages: list[Message], tools: list[ToolSpec], prompt_text: str,
                    prompt_tokens: int) -> ModelResponse:
        self.log.model_request(step, len(messages), prompt_text, prompt_tokens)

        def before_retry() -> None:
            wall = check_wall(self.meters, self.policy.budget, time.time())
            if wall is not None and not self.policy.shadowed(wall.rule):
                raise self.stop(wall)

        agent = self.policy.agent
        deadline = self.wall_deadline()
        try:
            response, latency = complete_with_retries(
                self.provider, messages, tools, agent.max_output_tokens, agent.max_retries, agent.retry_base_s,
                self.log.model_errors(step), before_retry, deadline)
        except RetriesExhausted as exc:  # not the task's fault: hold the run and try again later
            raise RunHeld(str(exc), "model.transient", "waiting", exc.retry_at) from exc
        except ModelError as exc:
            raise RunFailed(str(exc), "model.error") from exc
        # Call ids must be unique in the run (approvals are keyed by them), and each role and each
        # attempt counts from 0.
        prefix = self.log.role or (f"a{self.attempt}" if self.attempt else None)
        if prefix is not None:
            response = replace(response, tool_calls=[replace(c, id=f"{prefix}.{c.id}") for c in response.tool_calls])
        cost = response.cost_usd if response.cost_usd is not None else cost_of(self.provider.name, response.usage)
        hit = self.log.model_response(step, response, cost, latency)
        self.last_reply = response.content
        if hit is not None:  # e.g. too many replies without an action
            raise self.brake(None, hit)
        return response

    # tool calls -----------------------------------------------------------------------------

    def tool_call(self, call: ToolCall, execute: Callable[[ToolCall], ToolOutcome]) -> str:
        step = self.meters.steps
        hit = self.record(ev.ToolCall(step=step, call_id=call.id, name=call.name, arguments=call.arguments))
        if hit is not None:
            raise self.brake(call.id, hit)
        decision = self.guard.before_tool(call, self.meters, time.time())
        self._record_shadows(call.id)
        if decision.verdict == "stop":
            self._unexecuted(call, f"Not run: {decision.reason}.")
            raise self.stop(decision, call)
        if decision.verdict == "ask":
            decision = self._ask(step, call, decision)
        if decision.verdict == "deny":
            self.record(decision.as_event(step, call.id))
            observation = f"Denied by policy ({decision.rule}): {decision.reason}"
            hit = self._unexecuted(call, observation)
            if hit is not None:
                raise self.brake(call.id, hit)
            return observation
        started_ns = time.time_ns() - CTIME_SLACK_NS
        outcome = execute(call)
        observation = outcome.observation
        previous = self.tree
        try:
            # read_file, submit and remember cannot change the worktree (checks run on an export of it: see
            # run_checks); a write tool changes its one file; a command may change anything.
            if call.name in UNCHANGING_TOOLS:
                tree = previous
            elif call.name in WRITE_TOOLS and outcome.ok:
                tree = self.worktree.snapshot_file(previous, resolve_in_worktree(self.worktree.path,
                                                                                 call.arguments["path"]))
            else:
                tree = self.worktree.snapshot()
        except WorkspaceTampered as exc:
            self.worktree.restore(previous)
            self._unexecuted(call, f"{observation}\n\n[tether] This step was rolled back and the run stopped: {exc}")
            raise self.stop(Decision("stop", "workspace.git_pointer", str(exc)), call) from exc
        changed: list[str] = []
        refusal: Decision | None = None
        ignored = self._ignored_changes(started_ns) if call.name == "bash" else []
        if tree != previous or ignored or outcome.write_limited:
            if call.name in WRITE_TOOLS:  # the guard resolved the one path these tools write
                changed = [resolve_in_worktree(self.worktree.path, call.arguments["path"])]
            elif tree != previous:
                changed = self.worktree.diff(previous, tree).paths
            total = combined([self.worktree.diff(self.base_tree, tree), *self.unintegrated]) \
                if self.guard.needs_total else None
            deleted = self.worktree.deleted(previous, tree) if self.guard.judges_deletions else []
            refusal = self.guard.after_tool(call, changed, ignored, outcome.write_limited, total, deleted)

            def roll_back() -> None:
                self.worktree.restore(previous)
                self.worktree.remove_files(ignored)

            if refusal is not None and refusal.verdict == "ask":  # a deletion someone must approve
                diff = self.worktree.patch(previous, tree, refusal.paths, DIFF_LIMIT)
                answer = self._ask(step, call, refusal, diff=diff, before_pause=roll_back)
                refusal = None if answer.verdict == "allow" else answer
            if refusal is not None:
                roll_back()
                self.record(refusal.as_event(step, call.id, rolled_back=True))
                observation += f"\n\n[tether] This step was rolled back: {refusal.reason}"
                tree, changed = previous, []
                outcome = ToolOutcome(False, observation, outcome.exit_code, outcome.output_digest, outcome.duration_s,
                                      timed_out=outcome.timed_out)
        self.tree = tree
        manifests = sorted(set(changed) & set(self.environment_inputs))
        if manifests:  # the environment is the base commit's, whatever the agent writes into these
            note = (f"{', '.join(manifests)} changed; the project's environment stays the one built from the base "
                    "commit's files (nothing the agent writes is installed or run to build it)")
            self.record(ev.PolicyDecision(verdict="allow", rule="environment.manifest", reason=note, paths=manifests,
                                          call_id=call.id, step=step))
            observation += f"\n\n[tether] {note}."
        hit = self.record(ev.ToolResult(
            step=step, call_id=call.id, executed=True, ok=outcome.ok, exit_code=outcome.exit_code,
            output_digest=outcome.output_digest, duration_s=round(outcome.duration_s, 4), tree=tree,
            changed=changed, observation=observation, rework=outcome.rework, timed_out=outcome.timed_out,
        ))
        fleet = self.guard.fleet
        if fleet is not None and refusal is not None and refusal.rule == "fleet.max_lines_per_day_per_repo":
            raise fleet.over_lines(refusal.reason)
        if outcome.finished:
            if self.hands_over:
                # a submitting executor ran no checks: the reviewer judges everyone's work together
                raise RoleDone("handed over: " + ("it submitted" if call.name == "submit" else
                                                  "the required checks pass"))
            raise RunSucceeded("all required checks passed")
        if hit is not None:
            raise self.brake(call.id, hit)
        return observation

    def _unexecuted(self, call: ToolCall, observation: str) -> BrakeHit | None:
        return self.record(ev.ToolResult(
            step=self.meters.steps, call_id=call.id, executed=False, ok=False, exit_code=None, output_digest=None,
            duration_s=0.0, tree=self.tree, changed=[], observation=observation, rework=False,
        ))

    def _ask(self, step: int, call: ToolCall, ask: Decision, diff: str | None = None,
             before_pause: Callable[[], None] | None = None) -> Decision:
        """Ask for a decision once (recorded); a continued run finds it recorded and goes on. A call
        asked about after it ran (a deletion) is undone by `before_pause` when the run pauses: it runs
        again once the decision is taken."""
        if call.id not in self.log.decided:
            timeout = self.policy.approvals.timeout_s
            request = ev.ApprovalRequested(
                verdict=ask.verdict, rule=ask.rule, reason=ask.reason, paths=ask.paths, owners=ask.owners,
                call_id=call.id, step=step, tool=call.name, action=describe_action(call),
                diff=self.guard.proposed_diff(call) if diff is None else diff, model_reason=self.last_reply[-2000:],
                deadline=time.time() + timeout if timeout else None)
            self.record(ask.as_event(step, call.id))
            self.record(request)
            by_person = True
            if self.approver is not None:
                approved, by, reason = self.approver(request.as_json())
                refusal = self.guard.may_decide(ask, approved, by)
                if refusal is not None:
                    self.record(refusal.as_event(step, call.id))
                    if before_pause is not None:
                        before_pause()
                    raise RunPaused(f"{refusal.reason}; the run waits for an owner's decision", ask.rule)
            elif self.policy.approvals.unattended == "deny":
                approved, by, reason = False, UNATTENDED_DECIDER, "nobody attends this run (approvals.unattended)"
                by_person = False
            else:
                if before_pause is not None:
                    before_pause()
                what = {"writes.delete": "delete", "factory.spec": "start from the spec",
                        "factory.disagreement": "deliver a candidate nothing agrees with"}.get(ask.rule, "write")
                raise RunPaused(f"waiting for approval from {', '.join(ask.owners) or 'an admin'} to {what} "
                                f"{', '.join(ask.paths)}", ask.rule)
            self.record(ev.ApprovalDecided(call_id=call.id, approved=approved, by=by, reason=reason,
                                           by_person=by_person))
            self.log.decided[call.id] = (approved, by, reason)
        return self.guard.decide(ask, self.log.decided[call.id])

    def back_to(self, tree: str) -> None:
        """Put the worktree back to `tree` (a try's start, the best so far, the pick)."""
        if self.tree != tree:
            self.worktree.restore(tree)
            self.tree = tree

    def replayed(self, wanted: Callable[[ev.Payload], bool]) -> ev.Payload | None:
        """In a replay, the recorded run's first event that `wanted` accepts: what it measured or
        observed is read, not done again (None outside a replay)."""
        if self.replaying is None:
            return None
        return next((e.data for e in self.log.ledger.events(self.replaying) if wanted(e.data)), None)

    def approval(self, call_id: str, ask: Decision, shown: str) -> Approval:
        """A person's decision on something that is not a tool call (a factory's spec, its pick),
        asked and recorded as an approval of one: routed, paused for and continued like any other."""
        call = ToolCall(call_id, ask.rule.replace(".", "_"), {"paths": ask.paths})
        self._ask(self.meters.steps, call, ask, diff=shown)
        return self.log.decided[call_id]

    def _ignored_changes(self, since_ns: int) -> list[str]:
        """Ignored files changed since `since_ns` where a path rule could care (none otherwise)."""
        if not self.guard.watches_ignored:
            return []
        return self.guard.watched_ignored(self.worktree.ignored_changed_since(since_ns))

    # checks ---------------------------------------------------------------------------------

    def run_checks(self, call_id: str) -> list[CheckResult]:
        """Run the checks on a clean export of the worktree's tree as it is now: the files a commit
        of it would deliver, and nothing else the agent left in the worktree (ignored files,
        bytecode, build output). What the checks write there is thrown away with the export."""
        if not self.policy.checks:
            return []
        try:
            tree = self.worktree.snapshot()
        except WorkspaceTampered as exc:  # a command rewrote the .git pointer (no sandbox): put back, stop
            self.worktree.restore(self.tree)
            raise self.stop(Decision("stop", "workspace.git_pointer", str(exc))) from exc
        with self.judging(tree) as sandbox:
            return self._run_checks(call_id, sandbox)

    @contextmanager
    def judging(self, tree: str) -> Iterator[Sandbox]:
        """A sandbox on a clean export of `tree`, in the project's environment, for what judges the
        agent's work (checks, a metric): nothing the agent left outside the tree is there."""
        with checked_out(self.worktree.repo, tree, self.project) as folder:
            yield Sandbox(self.policy.sandbox, folder, network=self.policy.commands.network, project=self.project,
                          judging=True)

    def _run_checks(self, call_id: str, sandbox: Sandbox) -> list[CheckResult]:
        results = []
        for check in self.policy.checks:
            self.record(ev.CheckStarted(name=check.name, command=check.command, call_id=call_id))
            result: ExecResult = sandbox.run(check.command, seconds_until(self.wall_deadline(), check.timeout_s))
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
