"""Where a (repository, configuration) stands on the org's tier ladder, and moving it one rung.

Each pair has a gate log: a row of the runs table (source "gate") whose hash-chained events are its
`tier_changed` decisions, so a tier's history is audited like a run. No decision yet: the lowest
tier. A person may pin a tier; a pinned pair is neither promoted nor demoted until unpinned.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.exc import IntegrityError

from tether.errors import TetherError
from tether.gate.measure import Measures, breaches, measure_window
from tether.ledger import Ledger
from tether.ledger import events as ev
from tether.ledger.store import GATE_SOURCE, ConcurrentAppend
from tether.policy.schema import Sla, TierPolicy

Decision = Literal["promote", "demote", "pin", "unpin"]


class GateError(TetherError):
    """A gate command that cannot be done as asked (an unknown tier, a pin without a reason)."""


@dataclass(frozen=True)
class TierState:
    repo: str
    configuration: str
    tier: TierPolicy
    index: int
    pinned: bool = False
    pinned_by: str | None = None
    seen: int = 0  # events in the gate log when this was read: a move is recorded only on top of them


@dataclass(frozen=True)
class Verdict:
    """One evaluation: where the pair stands after it, the change it recorded (if any), and the
    evidence it looked at (the SLA judged: to keep this tier, else to enter the next)."""
    state: TierState
    changed: ev.TierChanged | None
    judged: str  # "keep <tier>", "enter <tier>", "pinned", or "top" (nothing above to enter)
    measures: Measures | None
    breaches: list[str]


def gate_log_id(repo: str, configuration: str) -> str:
    return "gate-" + hashlib.sha256(f"{repo}\n{configuration}".encode()).hexdigest()[:24]


def tier_state(ledger: Ledger, tiers: list[TierPolicy], repo: str, configuration: str) -> TierState:
    """The pair's tier now: its last decision's, or the lowest when it has none (or when the ladder
    no longer has the tier it was given)."""
    log = gate_log_id(repo, configuration)
    events = ledger.events(log) if ledger.has_run(log) else []
    names = [tier.name for tier in tiers]
    last = next((e.data for e in reversed(events) if isinstance(e.data, ev.TierChanged)), None)
    index = names.index(last.to_tier) if last is not None and last.to_tier in names else 0
    pinned = last is not None and last.pinned and last.to_tier in names
    return TierState(repo, configuration, tiers[index], index, pinned, last.by if pinned and last else None,
                     len(events))


def _record(ledger: Ledger, change: ev.TierChanged, seen: int) -> bool:
    """Append to the pair's gate log (made on first use) if nobody has since `seen` events; False
    when another worker decided first (its decision stands, this one was taken on stale state)."""
    log = gate_log_id(change.repo, change.configuration)
    if not ledger.has_run(log):
        with contextlib.suppress(IntegrityError):  # made by another worker just now
            ledger.create_run(log, repo=change.repo, instruction=f"permission tier of {change.configuration}",
                              source=GATE_SOURCE, status=GATE_SOURCE, model=change.configuration)
    try:
        ledger.record(log, change, after=seen)
    except ConcurrentAppend:
        return False
    return True


def _move(ledger: Ledger, tiers: list[TierPolicy], state: TierState, to: int, decision: Decision, reason: str,
          by: str, measures: Measures | None, found: list[str], pinned: bool = False) -> ev.TierChanged | None:
    change = ev.TierChanged(repo=state.repo, configuration=state.configuration, from_tier=state.tier.name,
                            to_tier=tiers[to].name, decision=decision, reason=reason, by=by, pinned=pinned,
                            measures=measures.as_dict() if measures else {}, breaches=found)
    return change if _record(ledger, change, state.seen) else None


def evaluate(ledger: Ledger, tiers: list[TierPolicy], repo: str, configuration: str, *, by: str,
             promote: bool = True, now: float | None = None) -> Verdict:
    """Judge the pair once and move it at most one tier: down when its tier's keep SLA is breached,
    else (with `promote`) up when the next tier's enter SLA is met. Workers call this with
    promote=False before each run, so a breach demotes before the next run starts."""
    state = tier_state(ledger, tiers, repo, configuration)
    if state.pinned:
        return Verdict(state, None, "pinned", None, [])
    keep = state.tier.keep_sla if state.index > 0 else None
    if keep is not None:
        measures = measure_window(ledger, repo, configuration, keep.window_days, now)
        found = breaches(keep, measures, entering=False)
        if found:
            change = _move(ledger, tiers, state, state.index - 1, "demote",
                           f"breached the SLA to keep {state.tier.name}", by, measures, found)
            return Verdict(tier_state(ledger, tiers, repo, configuration), change, f"keep {state.tier.name}",
                           measures, found)
    if state.index + 1 >= len(tiers):
        return Verdict(state, None, "top", None, [])
    upper = tiers[state.index + 1]
    enter: Sla = upper.enter  # type: ignore[assignment]  # every tier above the first has one
    measures = measure_window(ledger, repo, configuration, enter.window_days, now)
    found = breaches(enter, measures, entering=True)
    if found or not promote:
        return Verdict(state, None, f"enter {upper.name}", measures, found)
    change = _move(ledger, tiers, state, state.index + 1, "promote", f"met the SLA to enter {upper.name}", by,
                   measures, [])
    return Verdict(tier_state(ledger, tiers, repo, configuration), change, f"enter {upper.name}", measures, [])


def pin(ledger: Ledger, tiers: list[TierPolicy], repo: str, configuration: str, tier: str | None, *,
        by: str, reason: str) -> ev.TierChanged:
    """Pin the pair at `tier` (None: unpin, leaving it where it is for the gate to judge), recorded
    with who and why."""
    if not reason.strip():
        raise GateError("a pin needs a reason (--reason)")
    names = [t.name for t in tiers]
    if tier is not None and tier not in names:
        raise GateError(f"no tier {tier!r}; the ladder is {' -> '.join(names)}")
    state = tier_state(ledger, tiers, repo, configuration)
    to = names.index(tier) if tier is not None else state.index
    change = _move(ledger, tiers, state, to, "pin" if tier is not None else "unpin", reason, by, None, [],
                   pinned=tier is not None)
    if change is None:
        raise GateError("the tier changed while pinning it; run the command again")
    return change


def configurations(ledger: Ledger, repo: str) -> list[str]:
    """The configurations that ran in `repo` or have a gate log there, sorted."""
    seen = {row.model for row in ledger.list_runs(limit=None, repo=repo, sources=[GATE_SOURCE]) if row.model}
    rows = ledger.list_runs(limit=None, repo=repo)
    for events in ledger.events_of([row.id for row in rows], [ev.EventType.RUN_STARTED]).values():
        started = events[0].data if events else None
        if isinstance(started, ev.RunStarted) and started.configuration:
            seen.add(started.configuration)
    return sorted(seen)
