"""Store imported runs in the ledger, marked as imported with their source, so `show`, `verify`
and reports work on them like on live runs."""

from __future__ import annotations

from dataclasses import dataclass

from tether.backtest.trajectory import ImportedRun
from tether.ledger import Ledger
from tether.ledger.queries import summarize


@dataclass(frozen=True)
class Imported:
    run_id: str
    events: int
    skipped: bool  # already in the store (imports are idempotent)


def store_run(ledger: Ledger, run: ImportedRun) -> Imported:
    run_id = run.run_id
    if ledger.has_run(run_id):
        return Imported(run_id, 0, skipped=True)
    events = run.events()
    ledger.create_run(run_id, repo=run.path, instruction=run.task[:500] or run.instance_id,
                      source=f"imported:{run.source}", status=events[-1][0].status, model=run.model,
                      architecture=run.agent)
    count = ledger.record_many(run_id, events)
    ledger.update_run(run_id, summary=summarize(ledger.get_run(run_id), ledger.events(run_id)))
    return Imported(run_id, count, skipped=False)
