"""The orchestrated architecture: a planner splits the task into subtasks (structured output),
executors work on them each in its own worktree branched from the run's, and a reviewer merges
their branches into the run's worktree, resolves (or rejects) conflicts and makes the required
checks pass.

Every role's model and tool calls pass the run's one guard, so budgets, brakes and write caps are
shared, and every event carries the role's name. Progress is read back from the events (plan,
handover, merge), so a continued or resumed run picks up in the role it was in. Executors run one
after another: the guard's meters stay exact, and on a machine with one local model there is
nothing to gain from running them at once."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, ValidationError

from tether.agents.harness import run_harness
from tether.agents.session import Session
from tether.agents.tools import failure_report
from tether.guard.decisions import RoleDone, RunHeld, RunPaused, RunSucceeded
from tether.ledger import StoredEvent
from tether.ledger import events as ev
from tether.workspace.git import GitError, git, merge_commits
from tether.workspace.sandbox import worktree_sandbox
from tether.workspace.worktree import Worktree, create_worktree, open_worktree, reattach_worktree

PLANNER_PROMPT = """You are the planner of a small team of software engineers. Split the task into at most
{limit} subtasks that different engineers can do independently, in different files where possible (one
subtask is right for a small task). Reply with only a JSON object, no prose:
{{"subtasks": [{{"title": "short name", "instruction": "what to do, precisely"}}]}}"""

EXECUTOR_NOTE = """You are one engineer of several, each with your own copy of the repository. Do only your
subtask; a reviewer merges everyone's work afterwards. When your subtask is done, submit to hand it over."""

REVIEWER_PROMPT = """You are the reviewer of a small team of software engineers. Their branches have been
merged into this repository. Resolve any conflict markers, fix what does not fit together, run the tests,
and submit: the task is finished only when the required checks pass. Commands run in a sandbox without
network, and git is read-only there: edit the files themselves (no git add or commit), Tether commits your
work. If an action is denied by policy, do not repeat it unchanged."""

FILES_SHOWN = 200


class Subtask(BaseModel):
    title: str = Field(min_length=1)
    instruction: str = Field(min_length=1)


class Plan(BaseModel):
    subtasks: list[Subtask] = Field(min_length=1)


_FENCED = re.compile(r"```(?:json)?\s*\n(.*?)```", re.DOTALL)
_BRACES = re.compile(r"\{.*\}", re.DOTALL)


def parse_plan(text: str) -> Plan | None:
    """The plan in a planner's reply: the whole reply, a fenced block, or its outermost braces."""
    candidates = [text, *_FENCED.findall(text)]
    if match := _BRACES.search(text):
        candidates.append(match.group(0))
    for candidate in candidates:
        try:
            return Plan.model_validate_json(candidate.strip())
        except ValidationError:
            continue
    return None


def role_events(events: list[StoredEvent], role: str) -> list[StoredEvent]:
    return [event for event in events if event.data.role == role]


def run_orchestrated(session: Session, system_prompt: str, task: str, events: list[StoredEvent]) -> None:
    settings = session.policy.orchestrated
    plan = _plan(session, task, events)
    groups = [group for group in (plan.subtasks[i::settings.executors] for i in range(settings.executors)) if group]
    handed = {e.data.name: e.data for e in events if isinstance(e.data, ev.Handover)}
    for number, group in enumerate(groups, 1):
        role = f"executor-{number}"
        if role not in handed:
            prompt = settings.executor_prompt or f"{system_prompt}\n\n{EXECUTOR_NOTE}"
            handed[role] = _execute(session, role, prompt, _subtask_text(task, group), events)
        session.unintegrated.append(session.worktree.diff(session.base_tree, handed[role].tree))

    tree = session.log.trees.get("reviewer", session.base_tree)
    session.worktree.restore(tree)
    with session.role("reviewer", tree=tree):
        merges = [e.data for e in events if isinstance(e.data, ev.Merge)] or _integrate(session, list(handed.values()))
        session.unintegrated.clear()
        own = role_events(events, "reviewer")
        failures: str | None = None
        if not any(isinstance(event.data, ev.ModelResponse) for event in own):  # the reviewer's first act: checks
            failures = failure_report(session.run_checks("reviewer.integration"))
            if failures is None:
                raise RunSucceeded("all required checks passed after integration")
        run_harness(session, settings.reviewer_prompt or REVIEWER_PROMPT, _review_text(task, merges, failures), own)


def _plan(session: Session, task: str, events: list[StoredEvent]) -> Plan:
    recorded = next((e.data for e in events if isinstance(e.data, ev.Plan)), None)
    if recorded is not None:
        return Plan.model_validate({"subtasks": recorded.subtasks})
    settings = session.policy.orchestrated
    worktree = session.worktree
    files = git(worktree.repo, "ls-tree", "-r", "--name-only", worktree.base_commit).split("\n")
    listing = "\n".join(f for f in files[:FILES_SHOWN] if f)
    prompt = settings.planner_prompt or PLANNER_PROMPT.format(limit=settings.max_subtasks)
    messages = [{"role": "system", "content": prompt},
                {"role": "user", "content": f"{task}\n\nFiles in the repository:\n{listing}"}]
    with session.role("planner"):
        response = session.model_call(messages, [])  # no tools: the reply is the plan
        plan = parse_plan(response.content)
        fallback = plan is None
        if plan is None:  # an unreadable plan is not worth a run: one subtask, the task itself
            plan = Plan(subtasks=[Subtask(title="the whole task", instruction=task)])
        plan = Plan(subtasks=plan.subtasks[:settings.max_subtasks])
        session.record(ev.Plan(step=session.meters.steps, fallback=fallback,
                               subtasks=[s.model_dump() for s in plan.subtasks]))
    return plan


def _subtask_text(task: str, group: list[Subtask]) -> str:
    mine = "\n".join(f"- {s.title}: {s.instruction}" for s in group)
    return f"The whole task, for context:\n\n{task}\n\nYour subtask:\n{mine}"


def _executor_worktree(session: Session, role: str) -> Worktree:
    repo, ignores = session.worktree.repo, session.policy.writes.ignore
    worktree = open_worktree(repo, f"{session.run_id}.{role}", session.worktree.base_commit)
    if worktree.path.is_dir():
        return worktree
    try:
        git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{worktree.branch}")
    except GitError:
        return create_worktree(repo, f"{session.run_id}.{role}", session.worktree.base_commit, ignores)
    return reattach_worktree(worktree, ignores)


def _execute(session: Session, role: str, prompt: str, subtask: str, events: list[StoredEvent]) -> ev.Handover:
    """One executor in its own worktree until it hands over; its work is committed on its branch."""
    settings = session.policy.orchestrated
    own = role_events(events, role)
    worktree = _executor_worktree(session, role)
    tree = session.log.trees.get(role, session.base_tree)
    worktree.restore(tree)  # undo whatever a dead process changed after its last record
    sandbox = worktree_sandbox(session.policy.sandbox, session.policy.commands.network, worktree.path, worktree.repo,
                               project=session.sandbox.project)
    first_step = next((e.data.step for e in own if isinstance(e.data, ev.ModelRequest)), session.meters.steps + 1)
    with session.role(role, worktree, sandbox, tree=tree, hands_over=True,
                      step_limit=first_step - 1 + settings.executor_max_steps):
        reason = "handed over"
        try:
            run_harness(session, prompt, subtask, own)
        except RoleDone as done:
            reason = done.reason
        except (RunPaused, RunHeld):
            raise  # the run waits in this role; its worktree stays for the continuation
        except BaseException:  # the run ends here: keep the executor's work on its branch
            worktree.commit(session.tree, f"tether {role} (the run ended during this subtask)")
            worktree.remove()
            raise
        commit = worktree.commit(session.tree, f"tether {role}: {subtask.splitlines()[-1][:60]}")
        handover = ev.Handover(name=role, tree=session.tree, commit=commit, branch=worktree.branch, reason=reason,
                               diffstat=worktree.diff(session.base_tree, session.tree).as_dict())
        session.record(handover)
    worktree.remove()
    return handover


def _integrate(session: Session, handovers: list[ev.Handover]) -> list[ev.Merge]:
    """Merge the executors' branches, in order, into the run's worktree. A branch that conflicts is
    merged with conflict markers for the reviewer to resolve, or rejected, as the policy says."""
    repo, on_conflict = session.worktree.repo, session.policy.orchestrated.on_conflict
    ours, tree = session.worktree.base_commit, session.base_tree
    merges = []
    for handover in handovers:
        merged_tree, conflicts = merge_commits(repo, ours, handover.commit)
        if handover.tree == session.base_tree:
            merged, conflicts, reason = False, [], "no changes"
        elif conflicts and on_conflict == "reject":
            merged, reason = False, f"rejected: conflicts in {', '.join(conflicts)}"
        else:
            ours = git(repo, "commit-tree", merged_tree, "-p", ours, "-p", handover.commit,
                       "-m", f"merge {handover.name}").strip()
            tree, merged = merged_tree, True
            reason = f"conflicts left for the reviewer in {', '.join(conflicts)}" if conflicts else "merged cleanly"
        merge = ev.Merge(name=handover.name, branch=handover.branch, merged=merged, conflicts=conflicts, tree=tree,
                         reason=reason)
        session.record(merge)
        merges.append(merge)
    session.worktree.restore(tree)
    session.tree = tree
    return merges


def _review_text(task: str, merges: list[ev.Merge], failures: str | None) -> str:
    lines = [f"- {m.name} ({m.branch}): {m.reason}" for m in merges]
    text = f"The task:\n\n{task}\n\nWhat was merged:\n" + "\n".join(lines)
    if failures:
        text += f"\n\nThe required checks fail on the merged work:\n\n{failures}"
    return text
