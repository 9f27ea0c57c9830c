"""Factory (`architecture = "factory"`): a spec in, a judged candidate out, people only at the edges.

The spec (a file of the repository, read at the base commit, or the task itself) is approved by a
person before the first model call, once per content hash. The visible evals (the required checks)
must fail on the base. Then `candidates` independent tries, each from the base with its own seed
and its own step budget, are scored by the visible evals. Among those that pass, the judge picks by
agreement (CodeT, Chen et al. 2022; AlphaCode's clustering, Li et al. 2022): the model writes extra
inputs from the spec (calls, never expected outputs), every passing candidate is run on them in the
judging sandbox, candidates that behave identically form a group, and the largest group wins.
Candidates never see the inputs and cannot write the judge. When every passing candidate behaves
differently, a person is asked (or the policy delivers or stops). Every candidate, score, input,
behaviour and the decision is an event: a factory run replays and its choice can be audited."""

from __future__ import annotations

import hashlib
import re
import shlex
import time

from tether.agents.attempts import current_attempt, ends_attempt
from tether.agents.context import named_files_context
from tether.agents.harness import run_harness
from tether.agents.session import Session
from tether.guard.decisions import Decision, RunStopped, RunSucceeded
from tether.ledger import StoredEvent
from tether.ledger import events as ev
from tether.models import Provider
from tether.models.base import seconds_until
from tether.workspace.git import GitError, git

JUDGE_PROMPT = """You write test inputs for a specification. Read it and write {count} different calls
of its functions that a correct implementation must handle: typical cases, edge cases, unusual but
valid inputs. One Python expression per line, in one ```python block. Write only the calls, such as
`convert(15)`: no expected results, no assert, no print, no imports."""

# Run one input on a candidate: import what the candidates changed, evaluate the expression, print
# repr() of the value (or the exception's type) on the last line.
PYTHON_PROBE = """import sys
try:
{imports}    __value = repr(eval(compile(sys.argv[1], "<judge input>", "eval")))
except BaseException as __error:
    __value = "raised " + type(__error).__name__
print(__value)
"""
_BLOCK = re.compile(r"```[a-zA-Z]*\n(.*?)```", re.DOTALL)
_TEST_FILE = re.compile(r"(^|/)(test_[^/]*|[^/]*_test)\.py$")


def spec_of(session: Session, task: str) -> tuple[str, str]:
    """(where the spec comes from, its text): the policy's spec file at the base commit, else the task."""
    path = session.policy.factory.spec
    if path is None:
        return "the task", task
    try:
        return path, git(session.worktree.repo, "show", f"{session.worktree.base_commit}:{path}")
    except GitError as exc:
        raise session.stop(Decision("stop", "factory.spec", f"no spec {path!r} in the base commit "
                                    f"{session.worktree.base_commit[:10]} ([factory] spec): commit it first")) from exc


def run_factory(session: Session, system_prompt: str, task: str, events: list[StoredEvent]) -> None:
    factory = session.policy.factory
    where, spec = spec_of(session, task)
    if factory.approve_spec:
        _approve_spec(session, where, spec)
    _evals_fail_on_base(session, events)
    scored = {e.data.candidate: e.data for e in events if isinstance(e.data, ev.CandidateScored)}
    attempt, ended, since = current_attempt(events)
    brief = task if factory.spec is None else f"{task}\n\nThe specification ({where}):\n\n{spec}"
    provider = session.provider
    stopped: RunStopped | None = None
    try:
        for candidate in range(factory.candidates):
            if candidate in scored:
                if attempt == candidate and not ended:  # scored, then the process died: end it as it was
                    _end(session, scored[candidate])
                continue
            resuming = attempt == candidate and not ended
            if not resuming:
                session.back_to(session.base_tree)
                session.record(ev.AttemptStarted(attempt=candidate, tree=session.base_tree))
            session.provider, session.attempt = provider.for_attempt(candidate), candidate
            scored[candidate] = _try(session, system_prompt, brief, since if resuming else [], candidate,
                                     resuming and session.log.submitted)
    except RunStopped as exc:  # the run's budget (money, tokens, time) or a person: judge what there is
        stopped = exc
    finally:
        session.provider, session.attempt = provider, 0
    passing = [scored[c] for c in sorted(scored) if scored[c].passed]
    if not passing:
        session.back_to(session.base_tree)
        if stopped is not None:
            raise stopped
        raise RunStopped(f"none of {factory.candidates} candidates passed the visible evals", "factory.no_candidate")
    decided = _judge(session, passing, spec, events, provider)
    session.back_to(decided.tree or session.base_tree)
    agreeing = next((len(group) for group in decided.groups if decided.chosen in group), 1)
    raise RunSucceeded(f"factory: candidate {decided.chosen} of {len(scored)} ({len(passing)} passed the visible "
                       f"evals; {agreeing} agree with it): {decided.reason}")


def _approve_spec(session: Session, where: str, spec: str) -> None:
    """Before the first model call: a person approves the spec, unless its content was approved before."""
    digest = hashlib.sha256(spec.encode()).hexdigest()
    call_id = f"spec-{digest[:16]}"
    if call_id in session.log.decided:
        approved, by, reason = session.log.decided[call_id]
    else:
        before = _approved_before(session, call_id)
        if before is not None:
            session.record(ev.PolicyDecision(verdict="allow", rule="factory.spec", reason=before, paths=[where],
                                             call_id=call_id))
            return
        paths = [where] if session.policy.factory.spec else []
        owners = session.policy.factory.spec_owners or \
            (session.guard.ownership.owners_of(where) if session.policy.factory.spec else [])
        ask = Decision("ask", "factory.spec", f"approve the spec ({where}, sha256 {digest[:12]}) before the "
                       "factory spends anything on it", paths, owners)
        approved, by, reason = session.approval(call_id, ask, spec[:20_000])
    if not approved:
        raise session.stop(Decision("stop", "factory.spec", f"{by} did not approve the spec"
                                    + (f": {reason}" if reason else "")))


def _approved_before(session: Session, call_id: str) -> str | None:
    """Who approved this very spec (by its hash) in an earlier factory run of the repository."""
    ledger = session.log.ledger
    for run in ledger.list_runs(limit=500, repo=str(session.worktree.repo)):
        if run.id == session.run_id or run.architecture != "factory":
            continue
        for event in ledger.events(run.id):
            if isinstance(event.data, ev.ApprovalDecided) and event.data.call_id == call_id and event.data.approved:
                return f"the spec was approved by {event.data.by} in run {run.id}"
    return None


def _evals_fail_on_base(session: Session, events: list[StoredEvent]) -> None:
    """Evals the base already passes cannot tell a candidate from doing nothing."""
    finished = [e.data for e in events if isinstance(e.data, ev.CheckFinished) and e.data.call_id == "factory-base"]
    if not finished:
        with session.judging(session.base_tree) as sandbox:
            results = session._run_checks("factory-base", sandbox)
        passed = all(result.passed for result in results if result.required)
    else:
        passed = all(check.passed for check in finished if check.required)
    if passed:
        raise session.stop(Decision("stop", "factory.evals", "the required checks (the visible evals) already pass "
                                    "on the base commit: they cannot judge a candidate"))


def _try(session: Session, system_prompt: str, brief: str, since: list[StoredEvent], candidate: int,
         submitted: bool) -> ev.CandidateScored:
    try:
        if not submitted:
            run_harness(session, system_prompt, brief, since)
        passed, reason = True, "the visible evals passed"
    except RunSucceeded as done:
        passed, reason = True, done.reason
    except RunStopped as stopped:
        if not ends_attempt(stopped.rule):
            raise
        passed, reason = False, stopped.reason
    scored = ev.CandidateScored(candidate=candidate, tree=session.tree, passed=passed, reason=reason)
    session.record(scored)
    _end(session, scored)
    return scored


def _end(session: Session, scored: ev.CandidateScored) -> None:
    session.record(ev.AttemptEnded(attempt=scored.candidate, reason=scored.reason, rule="factory.candidate",
                                   tree=scored.tree))


def _judge(session: Session, passing: list[ev.CandidateScored], spec: str, events: list[StoredEvent],
           provider: Provider) -> ev.JudgeDecided:
    recorded = next((e.data for e in events if isinstance(e.data, ev.JudgeDecided)), None)
    if recorded is not None:
        return recorded
    trees: dict[str, list[int]] = {}
    for scored in passing:
        trees.setdefault(scored.tree, []).append(scored.candidate)
    if len(trees) == 1:
        ((tree, members),) = trees.items()
        return _decide(session, ev.JudgeDecided(chosen=members[0], tree=tree, method="only", groups=[members],
                                                reason=f"{len(members)} passing candidate(s), one tree"))
    inputs = _inputs(session, spec, events, provider, list(trees))
    behaviours = {tree: _behaviour(session, tree, members, inputs, events) for tree, members in trees.items()}
    grouped: dict[tuple[str, ...], list[int]] = {}
    for tree, members in trees.items():
        grouped.setdefault(tuple(behaviours[tree]), []).extend(members)
    groups = sorted((sorted(members) for members in grouped.values()), key=lambda g: (-len(g), g[0]))
    chosen = groups[0][0]
    tree = next(t for t, members in trees.items() if chosen in members)
    counted = f"{len(inputs)} judge inputs, {len(groups)} behaviour(s) among {len(passing)} passing candidates"
    if len(groups[0]) == 1:  # every passing candidate behaves differently: nothing agrees with anything
        return _disagreement(session, chosen, tree, groups, counted)
    if len(groups) > 1 and len(groups[1]) == len(groups[0]):
        return _decide(session, ev.JudgeDecided(chosen=chosen, tree=tree, method="tie", groups=groups, reason=(
            f"{counted}; groups of {len(groups[0])} tie: the first by candidate order")))
    return _decide(session, ev.JudgeDecided(chosen=chosen, tree=tree, method="agreement", groups=groups,
                                            reason=f"{counted}; the largest group has {len(groups[0])}"))


def _disagreement(session: Session, chosen: int, tree: str, groups: list[list[int]], counted: str) -> ev.JudgeDecided:
    factory = session.policy.factory
    reason = f"{counted}: every one behaves differently"
    if factory.on_disagreement == "stop":
        _decide(session, ev.JudgeDecided(chosen=None, tree=None, method="none", groups=groups, reason=reason))
        raise RunStopped(f"the factory's candidates disagree: {reason}", "factory.disagreement")
    if factory.on_disagreement == "deliver":
        return _decide(session, ev.JudgeDecided(chosen=chosen, tree=tree, method="tie", groups=groups,
                                                reason=f"{reason}; the first by candidate order"))
    paths = _changed(session, [tree])
    ask = Decision("ask", "factory.disagreement", f"{reason}; deliver candidate {chosen}?", paths,
                   factory.spec_owners)
    shown = session.worktree.patch(session.base_tree, tree, paths, 20_000)
    approved, by, why = session.approval(f"pick-{tree[:16]}", ask, shown)
    if not approved:
        _decide(session, ev.JudgeDecided(chosen=None, tree=None, method="none", groups=groups,
                                         reason=f"{reason}; {by} did not approve candidate {chosen}"))
        raise RunStopped(f"the factory's candidates disagree and {by} did not approve the pick"
                         + (f": {why}" if why else ""), "factory.disagreement")
    return _decide(session, ev.JudgeDecided(chosen=chosen, tree=tree, method="person", groups=groups,
                                            reason=f"{reason}; {by} approved candidate {chosen}"))


def _decide(session: Session, decided: ev.JudgeDecided) -> ev.JudgeDecided:
    session.record(decided)
    return decided


def _inputs(session: Session, spec: str, events: list[StoredEvent], provider: Provider,
            trees: list[str]) -> list[str]:
    recorded = next((e.data for e in events if isinstance(e.data, ev.JudgeInputs)), None)
    if recorded is not None:
        return recorded.inputs
    factory = session.policy.factory
    shown = named_files_context(session.worktree.repo, session.worktree.base_commit, " ".join(_changed(session, trees)))
    messages = [{"role": "system", "content": JUDGE_PROMPT.format(count=factory.judge_inputs)},
                {"role": "user", "content": f"{spec}\n\n{shown}".strip()}]
    # The judge's turn is an attempt of its own: the step budget is each candidate's, and a replay
    # finds its recorded turn by it. A resumed run takes the reply it recorded before it died.
    answered = next((e.data for e in events if isinstance(e.data, ev.ModelResponse) and e.data.role == "judge"), None)
    if answered is None:
        if not any(isinstance(e.data, ev.AttemptStarted) and e.data.attempt == factory.candidates for e in events):
            session.record(ev.AttemptStarted(attempt=factory.candidates, tree=session.tree))
        with session.role("judge", provider=provider.for_attempt(factory.candidates)):
            answered = session.model_call(messages, [])  # no tools: the reply is the inputs
    inputs = parse_inputs(answered.content, factory.judge_inputs)
    session.record(ev.JudgeInputs(inputs=inputs, probe=factory.probe or "python"))
    return inputs


def parse_inputs(reply: str, limit: int) -> list[str]:
    """The calls of the judge's reply: the lines of its code block (or of the reply), without
    comments, asserts, prints or imports, each once."""
    blocks = _BLOCK.findall(reply)
    lines = "\n".join(blocks).splitlines() if blocks else reply.splitlines()
    found: list[str] = []
    for line in lines:
        line = line.strip().rstrip(";")
        if not line or line.startswith(("#", "assert", "import ", "from ", "print(", "```")) or line in found:
            continue
        found.append(line)
    return found[:limit]


def _changed(session: Session, trees: list[str]) -> list[str]:
    """The files any of the trees changed from the base."""
    paths: list[str] = []
    for tree in trees:
        for change in session.worktree.diff(session.base_tree, tree).files:
            if change.path not in paths:
                paths.append(change.path)
    return paths


def _probe(session: Session, modules: list[str], given: str) -> str:
    probe = session.policy.factory.probe
    if probe is not None:
        return probe.replace("{input}", shlex.quote(given))
    imports = "".join(f"    from {module} import *\n" for module in modules)
    return f"python3 -c {shlex.quote(PYTHON_PROBE.format(imports=imports))} {shlex.quote(given)}"


def _modules(paths: list[str]) -> list[str]:
    return [path.removesuffix(".py").replace("/", ".") for path in paths
            if path.endswith(".py") and not _TEST_FILE.search(path) and "-" not in path]


def _behaviour(session: Session, tree: str, members: list[int], inputs: list[str],
               events: list[StoredEvent]) -> list[str]:
    """What the tree did on each input (recorded once; a replay or a resumed run reads the record)."""
    recorded = next((e.data for e in events if isinstance(e.data, ev.CandidateBehaviour) and e.data.tree == tree),
                    None) or _replayed(session, tree)
    if recorded is not None:
        outputs, duration, replayed = recorded.outputs, 0.0, session.replaying is not None
    else:
        modules = _modules(_changed(session, [tree]))
        outputs, started = [], time.perf_counter()
        with session.judging(tree) as sandbox:
            for given in inputs:
                result = sandbox.run(_probe(session, modules, given),
                                     seconds_until(session.wall_deadline(), session.policy.factory.probe_timeout_s))
                last = next((line for line in reversed(result.output.splitlines()) if line.strip()), "")
                outputs.append("timed out" if result.timed_out else last[:500] if result.exit_code == 0
                               else f"exit {result.exit_code}: {last[:200]}")
        duration, replayed = time.perf_counter() - started, False
    session.record(ev.CandidateBehaviour(candidate=members[0], tree=tree, candidates=members, outputs=outputs,
                                         duration_s=round(duration, 4), replayed=replayed))
    return outputs


def _replayed(session: Session, tree: str) -> ev.CandidateBehaviour | None:
    found = session.replayed(lambda data: isinstance(data, ev.CandidateBehaviour) and data.tree == tree)
    return found if isinstance(found, ev.CandidateBehaviour) else None
