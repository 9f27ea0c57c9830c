"""The measured record of a (repository, configuration) over a window, and whether it meets an SLA.

A run counts once it has finished (succeeded, failed or stopped). It *claims* a fix when it
succeeded (its required checks passed). A claimed fix is a *fix* when its work went as far as the
policy asked (delivered, unless the mode was "branch"), an eval's hidden tests passed (when it was
an eval run), and nobody reported it rejected, reverted or defective. Of the claimed fixes, a
*false success* was rejected or failed the hidden tests; an *escaped defect* was reverted or had a
defect traced to it after it was delivered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from sqlalchemy import select

from tether.ledger import Ledger
from tether.ledger import events as ev
from tether.ledger.queries import summarize
from tether.ledger.schema import eval_cells
from tether.policy.schema import Sla
from tether.stats import percentile, wilson

FINISHED = (ev.RunStatus.SUCCEEDED, ev.RunStatus.FAILED, ev.RunStatus.STOPPED)
PRODUCED_BY = ("live", "queue", "eval", "gateway")  # not replays, imports or gate logs
# Money and interrupts come from the summary a run stores when it ends; only these are read besides.
_READ = [ev.EventType.RUN_STARTED, ev.EventType.RUN_FINISHED, ev.EventType.DELIVERED, ev.EventType.OUTCOME_REPORTED]


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    started: ev.RunStarted
    finished_at: float
    claimed: bool
    fixed: bool
    false_success: bool
    escaped_defect: bool
    latency_s: float
    usd: float
    interrupts: int


@dataclass(frozen=True)
class Measures:
    runs: int
    fixes: int
    claimed: int
    fix_rate: float | None
    fix_rate_lower: float | None  # 95% Wilson interval
    p95_latency_s: float | None
    escaped_defect_rate: float | None
    false_success_rate: float | None
    usd_per_fix: float | None
    interrupts_per_run: float | None
    window_days: float

    def as_dict(self) -> dict[str, float | int | None]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _hidden_results(ledger: Ledger, run_ids: list[str]) -> dict[str, bool]:
    """Whether an eval run's hidden tests passed, for the runs that were scored eval cells."""
    found: dict[str, bool] = {}
    with ledger.engine.connect() as conn:
        for start in range(0, len(run_ids), 500):
            rows = conn.execute(select(eval_cells.c.run_id, eval_cells.c.score)
                                .where(eval_cells.c.run_id.in_(run_ids[start:start + 500]),
                                       eval_cells.c.score.is_not(None))).all()
            for row in rows:
                hidden = json.loads(row.score).get("hidden")
                if isinstance(hidden, dict):
                    found[row.run_id] = bool(hidden.get("passed"))
    return found


def run_records(ledger: Ledger, repo: str | None, since: float | None,
                selects: Callable[[ev.RunStarted], bool]) -> list[RunRecord]:
    """The finished runs (of `repo`, or of every repository) started at or after `since` whose
    run_started `selects` accepts, in the order they finished."""
    rows = [row for row in ledger.list_runs(limit=None, repo=repo, since=since, sources=list(PRODUCED_BY))
            if row.status in FINISHED]
    by_run = ledger.events_of([row.id for row in rows], _READ)
    hidden = _hidden_results(ledger, [row.id for row in rows])
    records = []
    for row in rows:
        events = by_run[row.id]
        started = events[0].data if events else None
        finished = next((e for e in reversed(events) if e.type == ev.EventType.RUN_FINISHED), None)
        if not isinstance(started, ev.RunStarted) or finished is None or not selects(started):
            continue
        claimed = row.status == ev.RunStatus.SUCCEEDED
        mode = (started.policy or {}).get("delivery", {}).get("mode", "branch")
        delivered = mode == "branch" or any(e.type == ev.EventType.DELIVERED for e in events)
        outcome = next((e.data.outcome for e in reversed(events) if isinstance(e.data, ev.OutcomeReported)), None)
        hidden_failed = hidden.get(row.id) is False
        summary = row.summary or summarize(row, ledger.events(row.id))  # no summary: ended before it was stored
        records.append(RunRecord(
            run_id=row.id, started=started, finished_at=finished.ts, claimed=claimed,
            fixed=claimed and delivered and not hidden_failed and outcome not in ("rejected", "reverted", "defect"),
            false_success=claimed and (hidden_failed or outcome == "rejected"),
            escaped_defect=claimed and outcome in ("reverted", "defect"),
            latency_s=finished.ts - events[0].ts, usd=summary["usage"]["usd"], interrupts=summary["interrupts"]))
    return sorted(records, key=lambda record: record.finished_at)


def measure(records: list[RunRecord], window_days: float) -> Measures:
    runs = len(records)
    fixes = sum(r.fixed for r in records)
    claimed = sum(r.claimed for r in records)
    return Measures(
        runs=runs, fixes=fixes, claimed=claimed,
        fix_rate=fixes / runs if runs else None,
        fix_rate_lower=wilson(fixes, runs)[0] if runs else None,
        p95_latency_s=percentile([r.latency_s for r in records], 95),
        escaped_defect_rate=sum(r.escaped_defect for r in records) / claimed if claimed else None,
        false_success_rate=sum(r.false_success for r in records) / claimed if claimed else None,
        usd_per_fix=sum(r.usd for r in records) / fixes if fixes else None,
        interrupts_per_run=sum(r.interrupts for r in records) / runs if runs else None,
        window_days=window_days,
    )


def measure_window(ledger: Ledger, repo: str, configuration: str, window_days: float,
                   now: float | None = None) -> Measures:
    since = (time.time() if now is None else now) - window_days * 86400
    records = run_records(ledger, repo, since, lambda started: started.configuration == configuration)
    return measure(records, window_days)


def breaches(sla: Sla, measures: Measures, *, entering: bool) -> list[str]:
    """What `measures` fails of `sla`, one sentence each; empty when it meets it. With fewer than
    `min_runs` runs in the window a tier is not entered (no evidence is not good evidence), but a
    tier held is kept: a quiet month is not a breach, and a few runs' rates would be noise."""
    if measures.runs < sla.min_runs:
        return [f"{measures.runs} runs in {sla.window_days:g} days, fewer than min_runs {sla.min_runs}"] \
            if entering else []
    found = []
    lower_limits = [("fix rate (95% lower bound)", measures.fix_rate_lower, sla.min_fix_rate)]
    upper_limits = [("p95 latency (s)", measures.p95_latency_s, sla.max_p95_latency_s),
                    ("escaped-defect rate", measures.escaped_defect_rate, sla.max_escaped_defect_rate),
                    ("false-success rate", measures.false_success_rate, sla.max_false_success_rate),
                    ("cost per fix (USD)", measures.usd_per_fix, sla.max_usd_per_fix),
                    ("interrupts per run", measures.interrupts_per_run, sla.max_interrupts_per_run)]
    for name, value, limit in lower_limits:
        if limit is not None and (value is None or value < limit):
            found.append(f"{name} {_shown(value)} below {limit:g}")
    for name, value, limit in upper_limits:
        # No claimed fix: no defect can have escaped, but no fix has a cost either.
        unmeasured_is_bad = name.startswith("cost")
        if limit is not None and ((value is None and unmeasured_is_bad) or (value is not None and value > limit)):
            found.append(f"{name} {_shown(value)} above {limit:g}")
    return found


def _shown(value: float | None) -> str:
    return "unmeasured" if value is None else f"{value:.3g}"
