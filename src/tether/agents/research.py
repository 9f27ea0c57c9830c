"""Research (`architecture = "research"`): improve a metric, one change at a time.

The metric command is measured on the base first (`repeats` times, in the judging sandbox on a clean
export: its spread is the noise). Then each iteration is a harness try from the best tree so far,
with a fresh conversation and its own seed: it proposes a change and submits; when its required
checks pass, the change is measured, and kept (a commit on the run's branch) only when its median
beats the best by more than the noise, else the worktree goes back to the best tree. A try that
used its steps or was braked is reverted too. When the iterations, or the run's budget, are used
up, the run delivers the best tree. Every measurement and every verdict is an event; a replay takes
the recorded measurements instead of measuring again, so it follows the same path.
"""

from __future__ import annotations

import re
import statistics
import time

from tether.agents.attempts import current_attempt, ends_attempt
from tether.agents.harness import run_harness
from tether.agents.session import Session
from tether.guard.decisions import Decision, RunStopped, RunSucceeded
from tether.ledger import StoredEvent
from tether.ledger import events as ev
from tether.models.base import seconds_until
from tether.policy.schema import ResearchPolicy

NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


class MetricFailed(Exception):
    """The metric could not be read: it failed, timed out, or printed no number."""


def read_metric(output: str) -> float:
    """The last number the metric printed."""
    found = NUMBER.findall(output)
    if not found:
        raise MetricFailed(f"it printed no number: {output.strip()[-200:]!r}")
    return float(found[-1])


def better(candidate: float, best: float, noise: float, direction: str) -> bool:
    """Whether `candidate` beats `best` by more than the noise, in the metric's direction."""
    return candidate < best - noise if direction == "lower" else candidate > best + noise


def run_research(session: Session, system_prompt: str, task: str, events: list[StoredEvent]) -> None:
    research = session.policy.research
    assert research.metric is not None  # the policy refuses research without one
    # A resumed run goes on from its log: what was measured is not measured again, a verdict stands.
    known = {e.data.iteration: e.data for e in events if isinstance(e.data, ev.MetricMeasured)}
    judged = {e.data.iteration: e.data for e in events if isinstance(e.data, ev.ResearchIteration)}
    try:
        base = known.get(0) or _measure(session, session.base_tree, 0)
    except MetricFailed as exc:
        raise session.stop(Decision("stop", "research.metric", f"the metric cannot be read on the base: {exc}")) \
            from exc
    if base.spread > research.max_noise * max(abs(base.median), 1e-12):
        raise session.stop(Decision("stop", "research.noise", f"the metric is too noisy to judge by: {base.values} "
                                    f"on the base (spread {base.spread:g} over a median of {base.median:g}, more "
                                    f"than [research] max_noise = {research.max_noise:g})"))
    best, best_tree = base.median, session.base_tree
    for verdict in judged.values():
        if verdict.kept and verdict.median is not None:
            best, best_tree = verdict.median, verdict.tree
    attempt, ended, since = current_attempt(events)
    iteration = 1 if attempt is None else attempt + (1 if ended else 0)
    fresh = attempt is None or ended
    if not fresh and iteration in judged:  # judged just before a crash: only its end is missing
        _end(session, judged[iteration])
        iteration, fresh = iteration + 1, True
    submitted = not fresh and session.log.submitted  # its checks passed just before a crash
    provider = session.provider
    try:
        while iteration <= research.iterations:
            if fresh:
                _begin(session, iteration, best_tree)
                since = []
            session.provider, session.attempt = provider.for_attempt(iteration), iteration
            verdict = _propose(session, system_prompt, _brief(task, research, base, best), since, iteration,
                               (best, base.spread, best_tree), known, submitted)
            if verdict.kept and verdict.median is not None:
                best, best_tree = verdict.median, verdict.tree
            iteration, fresh, submitted = iteration + 1, True, False
    except RunStopped:  # the run's budget (money, tokens, time) or a person: the best so far stands
        session.back_to(best_tree)
        if best_tree == session.base_tree:
            raise
    finally:
        session.provider = provider
    session.back_to(best_tree)
    gained = f"{research.metric}: {base.median:g} on the base, {best:g} at the best of {iteration - 1} iteration(s)"
    if best_tree == session.base_tree:
        raise RunStopped(f"no change beat the base by more than the noise ({base.spread:g}); {gained}",
                         "research.no_gain")
    raise RunSucceeded(f"research: {gained}")


def _brief(task: str, research: ResearchPolicy, base: ev.MetricMeasured, best: float) -> str:
    # The instruction comes last: small models act on the last thing they read.
    return (f"The metric `{research.metric}` measured {base.median:g} on the base (noise {base.spread:g}; "
            f"{research.direction} is better); the best so far is {best:g}. A change is kept only when the "
            "required checks pass and it beats the best by more than the noise; a proposal that changes nothing "
            f"is not measured.\n\n{task}")


def _propose(session: Session, system_prompt: str, task: str, since: list[StoredEvent], iteration: int,
             standing: tuple[float, float, str], known: dict[int, ev.MetricMeasured],
             submitted: bool) -> ev.ResearchIteration:
    """One proposal, judged; `standing` is (the best value, the noise, the best tree)."""
    best, noise, _ = standing
    research = session.policy.research
    try:
        if not submitted:
            run_harness(session, system_prompt, task, since)
    except RunSucceeded:  # its checks passed: measure it
        pass
    except RunStopped as stopped:
        if not ends_attempt(stopped.rule):
            raise
        return _judge(session, iteration, session.tree, None, standing, False, stopped.reason)
    tree = session.tree
    if tree == standing[2]:  # nothing to measure: the proposal left the best tree as it was
        return _judge(session, iteration, tree, None, standing, False, "no change was proposed")
    try:
        measured = known.get(iteration) or _measure(session, tree, iteration)
    except MetricFailed as exc:
        return _judge(session, iteration, tree, None, standing, False, f"the metric failed: {exc}")
    won = better(measured.median, best, noise, research.direction)
    reason = (f"{measured.median:g} beats {best:g} by more than the noise ({noise:g})" if won else
              f"{measured.median:g} does not beat {best:g} by more than the noise ({noise:g})")
    return _judge(session, iteration, tree, measured.median, standing, won, reason)


def _judge(session: Session, iteration: int, tree: str, median: float | None, standing: tuple[float, float, str],
           kept: bool, reason: str) -> ev.ResearchIteration:
    best, noise, best_tree = standing
    commit = None
    if kept:
        commit = session.worktree.commit(tree, f"research: iteration {iteration}: {reason}\n\nRun: {session.run_id}\n")
    else:
        session.back_to(best_tree)
    verdict = ev.ResearchIteration(iteration=iteration, tree=tree, median=median, best_before=best, noise=noise,
                                   kept=kept, reason=reason, commit=commit)
    session.record(verdict)
    _end(session, verdict)
    return verdict


def _end(session: Session, verdict: ev.ResearchIteration) -> None:
    session.record(ev.AttemptEnded(attempt=verdict.iteration, reason=verdict.reason,
                                   rule="research.kept" if verdict.kept else "research.reverted", tree=verdict.tree))


def _begin(session: Session, iteration: int, best_tree: str) -> None:
    session.back_to(best_tree)
    session.record(ev.AttemptStarted(attempt=iteration, tree=best_tree))




def _measure(session: Session, tree: str, iteration: int) -> ev.MetricMeasured:
    """Run the metric `repeats` times on `tree` (a replay takes what the recorded run measured)."""
    research = session.policy.research
    command = research.metric or ""
    recorded = _recorded(session, iteration)
    if recorded is not None:
        values, duration = recorded.values, 0.0
    else:
        values, started = [], time.perf_counter()
        with session.judging(tree) as sandbox:
            for _ in range(research.repeats):
                result = sandbox.run(command, seconds_until(session.wall_deadline(), research.timeout_s))
                if result.timed_out or result.exit_code != 0:
                    why = "timed out" if result.timed_out else f"exited {result.exit_code}"
                    raise MetricFailed(f"`{command}` {why}: {result.output.strip()[-300:]!r}")
                try:
                    values.append(read_metric(result.output))
                except MetricFailed as exc:
                    raise MetricFailed(f"`{command}` {exc}") from exc
        duration = time.perf_counter() - started
    measured = ev.MetricMeasured(iteration=iteration, tree=tree, command=command, values=values,
                                 median=statistics.median(values), spread=max(values) - min(values),
                                 duration_s=round(duration, 4), replayed=recorded is not None)
    session.record(measured)
    return measured


def _recorded(session: Session, iteration: int) -> ev.MetricMeasured | None:
    found = session.replayed(lambda data: isinstance(data, ev.MetricMeasured) and data.iteration == iteration)
    return found if isinstance(found, ev.MetricMeasured) else None
