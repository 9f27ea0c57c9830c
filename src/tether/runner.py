"""One run, end to end: worktree, guard, agent loop, delivery as a branch, all recorded."""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tether import lease
from tether.agents import run_agent
from tether.agents.context import named_files_context, with_context
from tether.agents.external import AGENT_RESUMED, check_agent, run_external
from tether.agents.harness import SYSTEM_PROMPT
from tether.agents.session import Approver, Session
from tether.delivery.deliver import deliver
from tether.delivery.remotes import DeliveryError
from tether.errors import TetherError
from tether.gate.ladder import evaluate
from tether.guard.brakes import Brakes
from tether.guard.decisions import RunEnded, RunHeld, RunSucceeded
from tether.guard.fleet import FleetGate
from tether.guard.guard import Guard, ownership_at
from tether.guard.runlog import EventSink, RunLog
from tether.ledger import Ledger, LedgerError
from tether.ledger import events as ev
from tether.ledger.fleet import Fleet
from tether.ledger.queries import HELD, held_reason, pending_approval, summarize
from tether.ledger.store import new_run_id
from tether.memory.store import Door, for_run, mark_given, shown
from tether.models import Provider, make_provider
from tether.people import os_user
from tether.policy import Policy
from tether.policy.load import org_limits
from tether.policy.schema import TierPolicy
from tether.policy.tiers import TierRefusal, apply_tier, configuration_of
from tether.telemetry.export import live_sink
from tether.workspace.export import lay_generated
from tether.workspace.git import GitError, current_branch, head_commit, repo_root
from tether.workspace.project import MANIFESTS, SetupFailed
from tether.workspace.provision import provision
from tether.workspace.sandbox import ExecResult, require_sandbox, worktree_sandbox
from tether.workspace.worktree import Worktree, create_worktree, open_worktree, reattach_worktree


class RunError(TetherError):
    """A run that cannot start or continue; nothing was changed."""


@dataclass(frozen=True)
class RunSpec:
    instruction: str
    repo: Path
    policy: Policy
    policy_path: Path | None = None
    model: str | None = None
    base_url: str | None = None
    base_commit: str | None = None  # default: the repository's HEAD
    system_prompt: str | None = None  # default: the policy's, else the architecture's
    source: str = "live"
    parent_run_id: str | None = None
    run_id: str | None = None  # default: a new time-ordered id; a queued task passes its own
    agent: str | None = None  # an external agent as the loop (claude-code, codex, command:CLI)
    requested_by: str | None = None  # who asked for it (a queued task's submitter); default: this user
    repo_url: str | None = None  # the URL a queued task named (repo is then this machine's checkout of it)
    base_branch: str | None = None  # default: the branch checked out in repo
    canary: str | None = None  # the canary that routed this queued task to `arm`
    arm: Literal["candidate", "current"] | None = None
    memory: list[dict[str, str]] | None = None  # the memory entries given (a replay's recorded ones); None: chosen now


def _fleet_gate(ledger: Ledger, repo: str, run_id: str) -> FleetGate:
    fleet = Fleet(ledger)
    return FleetGate(fleet, org_limits(fleet.org_policy()), repo, run_id)


def _session(ledger: Ledger, run_id: str, policy: Policy, provider: Provider, worktree: Worktree,
             on_event: EventSink | None, approver: Approver | None, requested_by: str | None,
             repo_name: str, replaying: str | None) -> Session:
    """The run's session; its sandbox gets the project's environment once `_environment` prepared it."""
    guard = Guard(policy=policy, ownership=ownership_at(policy, worktree.repo, worktree.base_commit),
                  root=worktree.path, fleet=_fleet_gate(ledger, repo_name, run_id),
                  requested_by=requested_by,
                  memory=Door(ledger, repo_name, run_id, policy.memory, replaying))
    log = RunLog(run_id=run_id, ledger=ledger, brakes=Brakes(policy.brakes), on_event=live_sink(on_event))
    return Session(
        log=log, guard=guard, policy=policy, provider=provider, worktree=worktree,
        sandbox=worktree_sandbox(policy.sandbox, policy.commands.network, worktree.path, worktree.repo),
        base_tree=worktree.base_tree(), approver=approver, replaying=replaying,
    )


def start_run(ledger: Ledger, spec: RunSpec, on_event: EventSink | None = None,
              approver: Approver | None = None, provider: Provider | None = None) -> dict[str, Any]:
    repo = repo_root(spec.repo.resolve())
    base_commit = spec.base_commit or head_commit(repo)
    policy = spec.policy
    # Refuse before anything is created: no sandbox, an unknown agent, or a model that cannot be built.
    require_sandbox(policy.sandbox)
    if spec.agent is not None:
        if policy.agent.attempts > 1:
            raise RunError(f"[agent] attempts = {policy.agent.attempts} is for Tether's own harness; "
                           f"the agent {spec.agent} runs once")
        try:
            check_agent(spec.agent)
        except ValueError as exc:
            raise RunError(str(exc)) from exc
    if provider is None:
        provider = make_provider(spec.model or policy.agent.model, spec.base_url, policy.agent.actions == "text")
    model = provider.name
    architecture = f"agent:{spec.agent}" if spec.agent else policy.agent.architecture
    configuration = configuration_of(policy, model, architecture)
    name = spec.repo_url or str(repo)  # what the fleet knows the repository by, on every machine
    # A replay re-runs a record with the policy it recorded (its tier's limits already in it); it
    # is not new work, so it neither waits on nor moves the gate.
    tier = _tier(ledger, policy, name, configuration) if spec.source != "replay" else None
    if tier is not None:
        try:
            policy = apply_tier(policy, tier, architecture)
        except TierRefusal as exc:
            raise RunError(str(exc)) from exc
    run_id = spec.run_id or new_run_id()
    owner = lease.owner_id()
    ledger.create_run(run_id, repo=name, instruction=spec.instruction, branch=f"tether/{run_id}",
                      base_commit=base_commit, model=model, architecture=architecture[:32],
                      owner=owner, heartbeat_at=time.time(), source=spec.source, parent_run_id=spec.parent_run_id)
    try:
        worktree = create_worktree(repo, run_id, base_commit, policy.writes.ignore)
    except GitError:
        ledger.update_run(run_id, status="failed", owner=None)  # never started: nothing to resume
        raise
    requested_by = spec.requested_by or os_user()
    session = _session(ledger, run_id, policy, provider, worktree, on_event, approver, requested_by, name,
                       spec.parent_run_id if spec.source == "replay" else None)
    system_prompt = spec.system_prompt or policy.agent.system_prompt or SYSTEM_PROMPT
    named = named_files_context(repo, base_commit, spec.instruction) \
        if policy.agent.show_named_files and spec.agent is None else None
    given = spec.memory if spec.memory is not None else [entry.given() for entry in
                                                          for_run(ledger, name, policy.memory)]
    context = "\n\n".join(part for part in (named, shown(given)) if part)
    policy_digest = hashlib.sha256(spec.policy_path.read_bytes()).hexdigest() if spec.policy_path else None
    session.record(ev.RunStarted(
        schema_version=ev.SCHEMA_VERSION, task=spec.instruction, repo=str(repo), base_commit=base_commit,
        base_tree=session.base_tree, branch=worktree.branch, worktree=str(worktree.path), model=model,
        base_url=spec.base_url, architecture=architecture, policy=policy.model_dump(mode="json"),
        policy_file=str(spec.policy_path) if spec.policy_path else None, policy_sha256=policy_digest,
        system_prompt=system_prompt, context=context or None, memory=given or None,
        sandbox=session.sandbox.describe(),
        user=os_user(), source=spec.source, parent_run_id=spec.parent_run_id, requested_by=requested_by,
        base_branch=spec.base_branch or current_branch(repo), repo_url=spec.repo_url, configuration=configuration,
        tier=tier.name if tier else None, tier_delivery=tier.delivery if tier else None, canary=spec.canary,
        arm=spec.arm,
    ))
    if spec.source != "replay":
        mark_given(ledger, [entry["id"] for entry in given])
    try:
        _environment(session)
    except SetupFailed as exc:
        _finish(ledger, session, "failed", str(exc), "environment.setup")
        return _summary(ledger, run_id)
    return _drive(ledger, session, owner, system_prompt, spec.instruction, [], spec.agent, context)


def _tier(ledger: Ledger, policy: Policy, repo: str, configuration: str) -> TierPolicy | None:
    """The tier this run may work at (None when the org has no tiers), after demoting the pair if
    its tier's SLA is breached: a breach takes effect before the next run, not at the next gate."""
    if not policy.tiers:
        return None
    return evaluate(ledger, policy.tiers, repo, configuration, by=f"worker {lease.owner_id()}",
                    promote=False).state.tier


def _environment(session: Session) -> None:
    """Prepare the project's environment from the run's base commit (from the cache, or by running
    its setup in the sandbox, each command recorded) and give it to the run's sandbox. Before the
    first model call, and again on every continue and resume: never from the agent's files."""
    policy, worktree = session.policy, session.worktree

    def record(command: str, result: ExecResult) -> None:
        ok = result.exit_code == 0 and not result.timed_out
        session.record(ev.EnvironmentSetup(name=command, exit_code=result.exit_code, ok=ok,
                                           duration_s=round(result.duration_s, 3), output_tail=result.output[-2000:]))

    prepared = provision(worktree.repo, worktree.base_commit, policy.environment, policy.sandbox, record)
    project = prepared.project
    generated = project.generated if project is not None else []
    session.record(ev.Environment(kind=prepared.plan.kind, note=prepared.plan.note, built=prepared.built,
                                  folder=str(project.folder) if project else None, setup=prepared.plan.setup,
                                  inputs=prepared.plan.inputs, generated=generated))
    worktree.exclude(generated)
    lay_generated(project, worktree.path)
    session.project = project
    session.environment_inputs = sorted({*prepared.plan.inputs, *MANIFESTS})
    session.sandbox = worktree_sandbox(policy.sandbox, policy.commands.network, worktree.path, worktree.repo,
                                       project=project)


def continue_run(ledger: Ledger, run_ref: str, on_event: EventSink | None = None,
                 approver: Approver | None = None) -> dict[str, Any]:
    """Continue a run paused for approval once the decision is recorded."""
    run = ledger.get_run(run_ref)
    if pending_approval(ledger.events(run.id)) is not None:
        raise RunError(f"run {run.id} still waits for an approval decision")
    owner = lease.owner_id()
    if not ledger.claim_run(run.id, "awaiting_approval", "running", owner=owner):
        raise RunError(f"run {run.id} is {ledger.get_run(run.id).status}; only a run awaiting approval "
                       "can be continued")
    events = ledger.events(run.id)
    session, started = _rebuild(ledger, run.id, events, on_event, approver)
    session.record(ev.RunContinued(reason="approval decided", user=os_user()))
    return _drive(ledger, session, owner, started.system_prompt or SYSTEM_PROMPT, started.task, events,
                  agent_of(started), started.context)


def resume_run(ledger: Ledger, run_ref: str, on_event: EventSink | None = None,
               approver: Approver | None = None) -> dict[str, Any]:
    """Resume a run whose process died: take it over from the dead holder, restore the worktree to
    the last recorded tree, rebuild conversation, meters and brakes from the events, and go on.
    A tool call that started but has no recorded result is executed again (and that is recorded)."""
    run = ledger.get_run(run_ref)
    if run.status == "awaiting_approval":
        raise RunError(f"run {run.id} waits for an approval; decide it with tether approve/deny")
    if run.status in HELD:
        return _resume_held(ledger, run.id, on_event, approver)
    if run.status != "running":
        raise RunError(f"run {run.id} is {run.status}; only a run whose process died can be resumed")
    if lease.holder_alive(run.owner, run.heartbeat_at):
        holder = lease.describe_holder(run.owner or "", run.heartbeat_at)
        raise RunError(f"run {run.id} is held by a live process ({holder})")
    owner = lease.owner_id()
    if not ledger.claim_run(run.id, "running", "running", owner=owner, from_owner=run.owner):
        raise RunError(f"run {run.id} was taken over by another process just now")
    events = ledger.events(run.id)
    if not events or events[0].type != ev.EventType.RUN_STARTED:
        ledger.claim_run(run.id, "running", "failed", from_owner=owner)
        raise RunError(f"run {run.id} died before it started; nothing to resume (marked failed)")
    finished = [e.data for e in events if isinstance(e.data, ev.RunFinished)]
    if finished:  # died after recording its end: only the projection and the clean-up are behind
        started = events[0].data
        assert isinstance(started, ev.RunStarted) and started.repo and started.base_commit
        worktree = open_worktree(Path(started.repo), run.id, started.base_commit)
        if worktree.path.exists():
            worktree.remove()
        ledger.claim_run(run.id, "running", finished[-1].status, from_owner=owner)
        return _summary(ledger, run.id)
    session, started = _rebuild(ledger, run.id, events, on_event, approver)
    in_flight = _in_flight(events)
    session.record(ev.RunResumed(user=os_user(), tree=session.tree, reexecuting=in_flight))
    agent = agent_of(started)
    # An external agent's conversation died with it: it starts again on the work so far, told so.
    task = f"{started.task}\n\n{AGENT_RESUMED}" if agent is not None else started.task
    return _drive(ledger, session, owner, started.system_prompt or SYSTEM_PROMPT, task, events, agent,
                  started.context)


def cancel_run(ledger: Ledger, run_ref: str, reason: str, by: str) -> dict[str, Any]:
    """End a run that waits (held by a failing model or a limit, or paused for an approval) and
    holds no process: its work so far is delivered on its branch, the end recorded as a manual stop."""
    run = ledger.get_run(run_ref)
    events = ledger.events(run.id)
    held = run.status in HELD and held_reason(events) is not None
    if not held and run.status != "awaiting_approval":
        raise RunError(f"run {run.id} is {run.status}; only a waiting, held or paused run can be cancelled")
    owner = lease.owner_id()
    if not ledger.claim_run(run.id, run.status, "running", owner=owner):
        raise RunError(f"run {run.id} was taken by another process just now")
    session, _ = _rebuild(ledger, run.id, events, None, None)
    _finish(ledger, session, "stopped", f"cancelled by {by}: {reason}", "manual")
    return _summary(ledger, run.id)


def _resume_held(ledger: Ledger, run_id: str, on_event: EventSink | None,
                 approver: Approver | None) -> dict[str, Any]:
    run = ledger.get_run(run_id)
    events = ledger.events(run_id)
    held = held_reason(events)
    if held is None:
        raise RunError(f"run {run_id} is {run.status} and finished; only a held run can be resumed")
    switch = Fleet(ledger).active_switch(run.repo, run_id)
    if switch is not None:
        raise RunError(f"run {run_id} is held by the kill switch on {switch.scope} ({switch.reason}); "
                       "lift it with tether release first")
    owner = lease.owner_id()
    if not ledger.claim_run(run_id, run.status, "running", owner=owner):
        raise RunError(f"run {run_id} was resumed by another process just now")
    if agent_of(events[0].data) is not None:  # its gateway stops an agent's run; it is never held
        raise RunError(f"run {run_id} was an external agent's; it cannot be held, so not resumed from a hold")
    session, started = _rebuild(ledger, run_id, events, on_event, approver)
    session.record(ev.RunResumed(user=os_user(), tree=session.tree, reexecuting=[], after=held.rule))
    return _drive(ledger, session, owner, started.system_prompt or SYSTEM_PROMPT, started.task, events,
                  context=started.context)


def _in_flight(events: list) -> list[str]:
    """Calls whose tool_call is recorded but whose tool_result is not."""
    started = [e.data.call_id for e in events if isinstance(e.data, ev.ToolCall)]
    done = {e.data.call_id for e in events if isinstance(e.data, ev.ToolResult)}
    return [call_id for call_id in started if call_id not in done]


def agent_of(started: ev.RunStarted) -> str | None:
    """The external agent a run was started with (architecture "agent:NAME"), or None."""
    architecture = started.architecture or ""
    return architecture.removeprefix("agent:") if architecture.startswith("agent:") else None


def _rebuild(ledger: Ledger, run_id: str, events: list, on_event: EventSink | None,
             approver: Approver | None) -> tuple[Session, ev.RunStarted]:
    started = events[0].data
    if not isinstance(started, ev.RunStarted) or started.repo is None or started.base_commit is None:
        raise RunError(f"run {run_id} was not started by Tether here; it cannot go on")
    policy = Policy.model_validate(started.policy)
    worktree = open_worktree(Path(started.repo), run_id, started.base_commit)
    if not worktree.path.is_dir():
        worktree = reattach_worktree(worktree, policy.writes.ignore)
    provider = make_provider(started.model or "", started.base_url, policy.agent.actions == "text")
    session = _session(ledger, run_id, policy, provider, worktree, on_event, approver,
                       started.requested_by or started.user, started.repo_url or started.repo,
                       started.parent_run_id if started.source == "replay" else None)
    session.log.replay(events)
    session.tree = session.log.last_tree or session.base_tree
    _environment(session)
    session.worktree.restore(session.tree)  # undo whatever a dead process changed after its last record
    if session.guard.fleet is not None:  # its diff was counted against the repository's day as it grew
        session.guard.fleet.lines_counted = session.worktree.diff(session.base_tree, session.tree).lines
    return session, started


def _drive(ledger: Ledger, session: Session, owner: str, system_prompt: str, task: str,
           events: list, agent: str | None = None, context: str | None = None) -> dict[str, Any]:
    status, reason, rule = "failed", "", ""
    try:
        with lease.Heartbeat(ledger, session.run_id, owner):
            if session.log.pending_hit is not None:  # the brake fired just before a crash
                raise session.brake(*session.log.pending_hit)
            # the checks passed just before a crash (a research proposal's or a factory candidate's end
            # is not the run's)
            if session.log.submitted and session.policy.agent.architecture not in ("research", "factory"):
                raise RunSucceeded("all required checks passed")
            if agent is not None:  # shown what the run was given (memory), like Tether's own agents
                run_external(session, agent, with_context(task, context))
            run_agent(session, system_prompt, with_context(task, context), events)
    except RunHeld as held:
        session.record(ev.RunPaused(reason=held.reason, rule=held.rule, status=held.status, retry_at=held.retry_at))
        ledger.update_run(session.run_id, status=held.status, owner=None)
        return _summary(ledger, session.run_id)
    except RunEnded as ended:
        status, reason, rule = ended.status, ended.reason, ended.rule
    except KeyboardInterrupt:  # held, not ended: the person may resume it or cancel it (delivering its work)
        session.record(ev.RunPaused(reason="interrupted by the user", rule="manual", status=ev.RunStatus.STOPPED))
        ledger.update_run(session.run_id, status="stopped", owner=None)
        return _summary(ledger, session.run_id)
    except LedgerError:
        raise  # the record itself failed: nothing more can be written honestly
    except Exception as exc:
        _finish(ledger, session, "failed", f"internal error: {exc!r}", "internal")
        raise
    if status == "awaiting_approval":
        session.record(ev.RunPaused(reason=reason, rule=rule, status=ev.RunStatus.AWAITING_APPROVAL))
        ledger.update_run(session.run_id, status=status, owner=None)
    else:
        _finish(ledger, session, status, reason, rule)
    return _summary(ledger, session.run_id)


def _summary(ledger: Ledger, run_id: str) -> dict[str, Any]:
    summary = summarize(ledger.get_run(run_id), ledger.events(run_id))
    ledger.update_run(run_id, summary=summary)
    return summary


def _finish(ledger: Ledger, session: Session, status: str, reason: str, rule: str) -> None:
    """Deliver whatever the worktree holds as a commit on the run's branch (work is kept on every
    outcome), record the end, and remove the worktree."""
    worktree = session.worktree
    run = ledger.get_run(session.run_id)
    message = f"tether: {run.instruction.splitlines()[0][:72] if run.instruction else 'run'}\n\n" \
              f"Run: {run.id}\nStatus: {status}\nReason: {reason}\n"
    commit = worktree.commit(session.tree, message)
    diffstat = worktree.diff(session.base_tree, session.tree).as_dict()
    session.record(ev.RunFinished(status=status, reason=reason, rule=rule, branch=worktree.branch, commit=commit,
                                tree=session.tree, diffstat=diffstat, usage=session.meters.as_dict()))
    ledger.update_run(session.run_id, status=status, owner=None)
    worktree.remove()
    if status == "succeeded" and session.policy.delivery.mode != "branch":
        with contextlib.suppress(DeliveryError):  # recorded as delivery_failed; `tether deliver` tries again
            deliver(ledger, session.run_id)

