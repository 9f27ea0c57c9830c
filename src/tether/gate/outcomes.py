"""Reporting what became of a run's work after it finished: the evidence escaped defects are made of."""

from __future__ import annotations

from tether.gate.ladder import GateError
from tether.gate.measure import FINISHED, PRODUCED_BY
from tether.ledger import Ledger
from tether.ledger import events as ev


def report_outcome(ledger: Ledger, run_ref: str, outcome: ev.Outcome, *, by: str,
                   reason: str = "") -> ev.OutcomeReported:
    """Append `outcome` to a finished run's log (the latest report counts)."""
    run = ledger.get_run(run_ref)
    if run.source not in PRODUCED_BY:
        raise GateError(f"run {run.id} is a {run.source} record, not a run whose work was delivered")
    if run.status not in FINISHED:
        raise GateError(f"run {run.id} is {run.status}; an outcome is reported once it has finished")
    if outcome != "rejected" and run.status != ev.RunStatus.SUCCEEDED:
        raise GateError(f"run {run.id} {run.status}: only a succeeded run's work can be {outcome}")
    reported = ev.OutcomeReported(outcome=outcome, by=by, reason=reason)
    ledger.record(run.id, reported)
    return reported
