"""Canaries: a candidate policy takes a share of the queued tasks until a sequential test decides.

A canary lives in its own hash-chained log (a runs row, source "canary"): `canary_started`, then at
most one `canary_decided`, plus `stopped` by a person. Workers route each new task by a hash of the
canary and the task id (so a retried task keeps its arm and the share is exact in expectation), and
judge the canary after each of its tasks finishes. The fix rate decides, by a confidence sequence on
the difference (gate/sequential.py), looked at after every task:

- rollback when the candidate fixes less, with confidence, or costs more per task, with confidence,
  by more than `cost_tolerance` of the current configuration's cost per task;
- promote when it fixes more, with confidence, and its cost per fix is within `cost_tolerance`;
- exhausted at `max_tasks` without either; the current configuration stays.

No decision before `min_tasks`. A promoted candidate takes every task of the canary's scope until
the canary is stopped (once the team has made it the policy); the others route nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from tether.gate.ladder import GateError
from tether.gate.measure import RunRecord, run_records
from tether.gate.sequential import DifferenceSequence
from tether.ledger import Ledger
from tether.ledger import events as ev
from tether.ledger.store import CANARY_SOURCE, ConcurrentAppend
from tether.policy.load import policy_from_text
from tether.policy.schema import Policy

Arm = Literal["candidate", "current"]
ENDED = ("rollback", "exhausted", "stopped")


@dataclass(frozen=True)
class Canary:
    id: str
    started: ev.CanaryStarted
    started_at: float
    decided: ev.CanaryDecided | None
    stopped: ev.CanaryDecided | None
    seen: int  # events in its log when read: a decision is recorded only on top of them

    @property
    def routing(self) -> bool:
        """Whether it still routes tasks: undecided, or promoted and not yet stopped."""
        return self.stopped is None and (self.decided is None or self.decided.decision == "promote")

    def covers(self, repo: str) -> bool:
        return self.started.repo is None or self.started.repo == repo


@dataclass(frozen=True)
class Assignment:
    canary: str
    arm: Arm
    policy: Policy | None  # the candidate's, layered over the org policy; None for the current arm


@dataclass(frozen=True)
class ArmMeasures:
    tasks: int
    fixes: int
    usd: float

    @property
    def fix_rate(self) -> float | None:
        return self.fixes / self.tasks if self.tasks else None

    @property
    def usd_per_fix(self) -> float | None:
        return self.usd / self.fixes if self.fixes else None

    @property
    def usd_per_task(self) -> float | None:
        return self.usd / self.tasks if self.tasks else None

    def as_dict(self) -> dict[str, Any]:
        return {"tasks": self.tasks, "fixes": self.fixes, "usd": round(self.usd, 6), "fix_rate": self.fix_rate,
                "usd_per_fix": self.usd_per_fix}


@dataclass(frozen=True)
class Point:
    tasks: int
    estimate: float
    lower: float
    upper: float


@dataclass(frozen=True)
class CanaryStatus:
    canary: Canary
    candidate: ArmMeasures
    current: ArmMeasures
    fix_difference: Point | None  # candidate minus current, with its always-valid interval
    cost_difference: Point | None  # per task, USD
    path: list[Point]  # the fix-rate difference after each task, for the report
    verdict: tuple[str, str] | None  # (decision, reason) the evidence supports now

    def evidence(self) -> dict[str, Any]:
        return {"candidate": self.candidate.as_dict(), "current": self.current.as_dict(),
                "fix_difference": _point(self.fix_difference), "cost_difference": _point(self.cost_difference)}


def _point(point: Point | None) -> dict[str, float] | None:
    return None if point is None else {"estimate": round(point.estimate, 5), "lower": round(point.lower, 5),
                                       "upper": round(point.upper, 5)}


def _read(ledger: Ledger, canary_id: str) -> Canary:
    run = ledger.get_run(canary_id)
    events = ledger.events(run.id)
    if run.source != CANARY_SOURCE or not events or not isinstance(events[0].data, ev.CanaryStarted):
        raise GateError(f"{run.id} is not a canary")
    decisions = [e.data for e in events if isinstance(e.data, ev.CanaryDecided)]
    decided = next((d for d in decisions if d.decision != "stopped"), None)
    stopped = next((d for d in decisions if d.decision == "stopped"), None)
    return Canary(run.id, events[0].data, events[0].ts, decided, stopped, len(events))


def canaries(ledger: Ledger) -> list[Canary]:
    """Every canary of the store, newest first."""
    return [_read(ledger, row.id) for row in ledger.list_runs(limit=None, sources=[CANARY_SOURCE])]


def start_canary(ledger: Ledger, candidate_path: Path, *, share: float, repo: str | None, by: str,
                 org_text: str | None, alpha: float = 0.05, min_tasks: int = 100, max_tasks: int = 2000,
                 cost_tolerance: float = 0.2) -> Canary:
    """Begin routing `share` of the queued tasks to the candidate policy. Refused when the file is
    not a valid policy, the numbers are out of range, or a canary already routes in this scope."""
    if not 0 < share < 1:
        raise GateError(f"--share must be between 0 and 1 (exclusive), got {share}")
    if not 0 < alpha < 1:
        raise GateError(f"--alpha must be between 0 and 1, got {alpha}")
    if not 2 <= min_tasks <= max_tasks:
        raise GateError(f"need 2 <= min_tasks <= max_tasks, got {min_tasks} and {max_tasks}")
    if cost_tolerance < 0:
        raise GateError(f"--cost-tolerance must be 0 or more, got {cost_tolerance}")
    text = candidate_text(candidate_path)
    policy_from_text(text, candidate_path, org_text)  # a bad candidate is refused now, not by every worker
    clash = [c for c in canaries(ledger) if c.routing and (repo is None or c.started.repo is None
                                                           or c.started.repo == repo)]
    if clash:
        raise GateError(f"canary {clash[0].id} already routes tasks of "
                        f"{clash[0].started.repo or 'every repository'}; stop it first (tether canary stop)")
    canary_id = f"canary-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    ledger.create_run(canary_id, repo=repo or "*", instruction=f"canary of {candidate_path}",
                      source=CANARY_SOURCE, status=CANARY_SOURCE)
    ledger.record(canary_id, ev.CanaryStarted(
        candidate=text, candidate_path=str(candidate_path), candidate_sha256=hashlib.sha256(text.encode()).hexdigest(),
        share=share, repo=repo, alpha=alpha, min_tasks=min_tasks, max_tasks=max_tasks, cost_tolerance=cost_tolerance,
        by=by))
    return _read(ledger, canary_id)


def candidate_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GateError(f"cannot read the candidate policy {path}: {exc}") from exc


def route(ledger: Ledger, repo: str, task_id: str, org_text: str | None) -> Assignment | None:
    """Which arm a new task of `repo` runs in, or None when no canary routes it."""
    canary = next((c for c in canaries(ledger) if c.routing and c.covers(repo)), None)
    if canary is None:
        return None
    draw = int(hashlib.sha256(f"{canary.id}\n{task_id}".encode()).hexdigest()[:12], 16) / 16 ** 12
    promoted = canary.decided is not None and canary.decided.decision == "promote"
    if promoted or draw < canary.started.share:
        started = canary.started
        return Assignment(canary.id, "candidate",
                          policy_from_text(started.candidate, Path(started.candidate_path), org_text))
    return Assignment(canary.id, "current", None)


def decide(rule: ev.CanaryStarted, tasks: int, fix: Point | None, cost: Point | None, candidate: ArmMeasures,
           current: ArmMeasures) -> tuple[str, str] | None:
    """The decision the evidence after `tasks` finished tasks supports, with its reason, or None
    (see the module's docstring for the rule)."""
    if tasks < rule.min_tasks or fix is None:
        return None
    per_task = current.usd_per_task or 0.0
    if fix.upper < 0:
        return "rollback", f"the candidate fixes less: difference {fix.estimate:+.3f}, interval below 0"
    if cost is not None and per_task > 0 and cost.lower > rule.cost_tolerance * per_task:
        return "rollback", (f"the candidate costs more per task: +${cost.lower:.4f} at least, over "
                            f"{rule.cost_tolerance:.0%} of ${per_task:.4f}")
    if fix.lower > 0:
        ours, theirs = candidate.usd_per_fix, current.usd_per_fix
        if ours is None or theirs is None or ours <= theirs * (1 + rule.cost_tolerance):
            return "promote", f"the candidate fixes more: difference {fix.estimate:+.3f}, interval above 0"
    if tasks >= rule.max_tasks:
        return "exhausted", f"{tasks} tasks without a decision; the current configuration stays"
    return None


def status(ledger: Ledger, canary_id: str) -> CanaryStatus:
    """The canary's measures and the decision its evidence supports now."""
    canary = _read(ledger, canary_id)
    records: list[RunRecord] = run_records(ledger, canary.started.repo, canary.started_at - 1,
                                           lambda started: started.canary == canary.id)
    if canary.decided is not None:  # what came after a decision is not evidence for it
        records = records[:canary.decided.tasks]
    fix_rate = DifferenceSequence(canary.started.share, canary.started.alpha)
    cost = DifferenceSequence(canary.started.share, canary.started.alpha)
    path: list[Point] = []
    arms: dict[str, list[RunRecord]] = {"candidate": [], "current": []}
    for record in records:
        to_candidate = record.started.arm == "candidate"
        arms["candidate" if to_candidate else "current"].append(record)
        fix_rate.add(to_candidate, float(record.fixed))
        cost.add(to_candidate, record.usd)
        interval = fix_rate.interval()
        if interval is not None:
            path.append(Point(fix_rate.t, fix_rate.estimate or 0.0, *interval))
    measured = {arm: ArmMeasures(len(rs), sum(r.fixed for r in rs), sum(r.usd for r in rs)) for arm, rs in arms.items()}
    cost_interval = cost.interval()
    cost_point = Point(cost.t, cost.estimate or 0.0, *cost_interval) if cost_interval else None
    fix_point = path[-1] if path else None
    verdict = decide(canary.started, len(records), fix_point, cost_point, measured["candidate"], measured["current"])
    return CanaryStatus(canary, measured["candidate"], measured["current"], fix_point, cost_point, path, verdict)


def judge(ledger: Ledger, canary_id: str, *, by: str) -> CanaryStatus:
    """Record the decision the evidence supports, if the canary has none yet (workers call this
    after each of its tasks)."""
    found = status(ledger, canary_id)
    if found.canary.decided is None and found.canary.stopped is None and found.verdict is not None:
        decision, reason = found.verdict
        with contextlib.suppress(ConcurrentAppend):  # another worker recorded a decision first
            ledger.record(found.canary.id, ev.CanaryDecided(
                decision=decision, reason=reason, by=by,  # type: ignore[arg-type]
                tasks=found.candidate.tasks + found.current.tasks, evidence=found.evidence()), after=found.canary.seen)
        found = replace(found, canary=_read(ledger, found.canary.id))  # the evidence is the same; the log moved
    return found


def stop_canary(ledger: Ledger, canary_id: str, *, by: str, reason: str) -> ev.CanaryDecided:
    """End a canary by hand: it routes nothing from now on."""
    if not reason.strip():
        raise GateError("stopping a canary needs a reason (--reason)")
    found = status(ledger, canary_id)
    if found.canary.stopped is not None or (found.canary.decided and found.canary.decided.decision in ENDED):
        raise GateError(f"canary {canary_id} has already ended")
    stopped = ev.CanaryDecided(decision="stopped", reason=reason, by=by,
                               tasks=found.candidate.tasks + found.current.tasks, evidence=found.evidence())
    ledger.record(found.canary.id, stopped)
    return stopped
