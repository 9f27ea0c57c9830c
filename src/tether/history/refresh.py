"""Outcomes without a person typing them: what the repository's history says of each delivered
change (merged, reverted, rewritten by others), and what its forge says of its pull request
(merged, closed unmerged, reviewers asking for changes), recorded as the runs' outcomes that tiers
and canaries read. Each refresh is an event in the repository's refresh log, so what was looked at
and what was concluded can be audited."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from tether.delivery.deliver import review_of
from tether.delivery.forges import Review
from tether.delivery.remotes import DeliveryError
from tether.history.outcomes import Outcome
from tether.history.report import Report, build
from tether.ledger import Ledger
from tether.ledger import events as ev
from tether.ledger.store import OUTCOMES_SOURCE, ConcurrentAppend

AUTOMATIC = "tether "  # how refreshers sign (`tether report`, `tether worker ID`); people sign with their names
SEVERITY: dict[str, int] = {"merged": 0, "rejected": 1, "defect": 2, "reverted": 3}


def refresh_log_id(repo: str) -> str:
    return "outcomes-" + hashlib.sha256(repo.encode()).hexdigest()[:24]


def from_history(outcome: Outcome, days: float) -> tuple[ev.Outcome | None, str]:
    """The verdict of the repository's history: reverted; a defect when others rewrote its lines
    within `days`; merged; or nothing (not on the default branch)."""
    if not outcome.merged:
        return None, ""
    if outcome.reverted_by:
        return "reverted", f"reverted by {outcome.reverted_by[:10]}"
    if outcome.follow_ups:
        return "defect", f"rewritten by {', '.join(c[:10] for c in outcome.follow_ups)} within {days:g} days"
    return "merged", f"merged as {(outcome.merged_as or '?')[:10]}"


def from_forge(review: Review) -> tuple[ev.Outcome | None, str]:
    """The verdict of the pull request: merged, or rejected when closed unmerged; an open request
    has none yet."""
    asking = f"; changes requested by {', '.join(review.changes_requested)}" if review.changes_requested else ""
    if review.state == "merged":
        return "merged", "merged on the forge" + asking
    if review.state == "closed":
        return "rejected", "closed on the forge without merging" + asking
    return None, ""


def _worth_recording(events: list, verdict: ev.Outcome) -> bool:
    """Differs from the latest outcome; a person's report stands unless the evidence is graver."""
    last = next((e.data for e in reversed(events) if isinstance(e.data, ev.OutcomeReported)), None)
    if last is None:
        return True
    if last.outcome == verdict:
        return False
    return last.by.startswith(AUTOMATIC) or SEVERITY[verdict] > SEVERITY[last.outcome]


def refresh(ledger: Ledger, repo: Path, days: float, *, by: str, report: Report | None = None,
            environ: Mapping[str, str] | None = None) -> ev.OutcomesRefreshed:
    """Follow every change the store's runs delivered in `repo` (or take `report`, built already),
    ask the forge where each run's pull request stands, record the outcomes that changed, and the
    refresh itself."""
    report = report or build(ledger, repo, None, days)
    found = []
    for row in report.rows:
        run_id = row.outcome.run_id
        if run_id is None:
            continue
        events = ledger.events(run_id)
        verdict, reason = from_history(row.outcome, days)
        review, error = None, None
        try:
            review = review_of(run_id, events, environ)
        except DeliveryError as exc:
            error = f"{exc.kind}: {exc}"
        if review is not None:
            forge_verdict, forge_reason = from_forge(review)
            if verdict is None:
                verdict, reason = forge_verdict, forge_reason
            elif review.changes_requested:
                reason += f"; changes requested by {', '.join(review.changes_requested)}"
        recorded = False
        if verdict is not None and _worth_recording(events, verdict):
            with contextlib.suppress(ConcurrentAppend):  # another refresher recorded first: its report stands
                ledger.record(run_id, ev.OutcomeReported(outcome=verdict, by=by, reason=reason), after=len(events))
                recorded = True
        found.append(ev.RefreshedRun(run_id=run_id, outcome=verdict, recorded=recorded, reason=reason,
                                     forge_state=review.state if review else None,
                                     changes_requested=review.changes_requested if review else [], error=error))
    refreshed = ev.OutcomesRefreshed(repo=str(repo), by=by, days=days, runs=found)
    log = refresh_log_id(str(repo))
    if not ledger.has_run(log):
        with contextlib.suppress(IntegrityError):  # made by another worker just now
            ledger.create_run(log, repo=str(repo), instruction=f"outcome refreshes of {repo}",
                              source=OUTCOMES_SOURCE, status=OUTCOMES_SOURCE)
    ledger.record(log, refreshed)
    return refreshed


def last_refreshed(ledger: Ledger, repo: str) -> float | None:
    log = refresh_log_id(repo)
    if not ledger.has_run(log):
        return None
    events = ledger.events(log)
    return events[-1].ts if events else None


def refresh_due(ledger: Ledger, every_s: float, *, by: str, days: float = 30,
                now: float | None = None) -> dict[str, ev.OutcomesRefreshed | str]:
    """Refresh every repository of the store whose last refresh is older than `every_s`: what a
    worker does on its schedule. Returns each repository's refresh, or why it could not be done."""
    now = time.time() if now is None else now
    done: dict[str, ev.OutcomesRefreshed | str] = {}
    for repo in ledger.distinct("repo", limit=10_000):
        if not Path(repo).is_absolute():  # a canary's "*" (every repository) is no repository
            continue
        last = last_refreshed(ledger, repo)
        if last is not None and now - last < every_s:
            continue
        if not Path(repo, ".git").exists():
            done[repo] = "not a git repository on this machine"
            continue
        try:
            done[repo] = refresh(ledger, Path(repo), days, by=by)
        except Exception as exc:
            done[repo] = f"{type(exc).__name__}: {exc}"
    return done
