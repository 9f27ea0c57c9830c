"""Commands for approvals: what waits, and a person's decision."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from tether import runner
from tether.approvals import decide_approval, expire_approvals, list_pending
from tether.cli.common import (
    DbOpt,
    JsonOpt,
    RepoOpt,
    app,
    budget_of,
    err,
    finish_run,
    open_ledger,
    out,
    terminal_approver,
)
from tether.people import acting
from tether.render.runs import print_approval_request
from tether.render.steps import StepPrinter
from tether.render.text import table_of


@app.command()
def approvals(
    repo: RepoOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False,
    sweep: Annotated[bool, typer.Option("--sweep", help="Apply timeouts (deny or escalate) and continue "
                                                        "runs whose request was denied.")] = False,
) -> None:
    """List approval requests waiting for a decision.

    Example: tether approvals --json
    """
    with open_ledger(db, repo) as ledger:
        if sweep:
            for run_id, what in expire_approvals(ledger):
                err.print(f"run {run_id}: {what}")
                if what.startswith("denied"):
                    runner.continue_run(ledger, run_id, on_event=StepPrinter(err))
        waiting = list_pending(ledger)
    if as_json:
        out.print_json(json.dumps([{"run_id": p.run_id, "overdue": p.overdue, **p.request} for p in waiting]))
        return
    rows = [[p.run_id, str(p.request["step"]), p.request["action"], ", ".join(p.request["owners"]),
             f"{time.time() - p.request['requested_at']:.0f}s",
             "none" if p.request.get("deadline") is None else (
                 "overdue" if p.overdue else f"in {p.request['deadline'] - time.time():.0f}s")] for p in waiting]
    out.print(table_of(["run", "step", "action", "owners", "waiting", "deadline"], rows, ("run", "owners")))
    for pending in waiting:
        out.print()
        print_approval_request(out, pending.run_id, pending.request)


def _decide(run_id: str, approved: bool, on_behalf_of: str | None, reason: str, repo: Path, db: str | None,
            resume: bool, as_json: bool) -> None:
    with open_ledger(db, repo) as ledger:
        actor = acting(ledger)
        decided = decide_approval(ledger, run_id, approved, actor, reason, on_behalf_of)
        by = f"{on_behalf_of} (recorded by {actor.describe()})" if on_behalf_of else actor.describe()
        err.print(f"recorded: {'approved' if approved else 'denied'} by {by}")
        if not resume:
            return
        summary = runner.continue_run(ledger, decided, on_event=StepPrinter(err),
                                      approver=terminal_approver())
        budget = budget_of(ledger, decided)
    finish_run(summary, as_json, budget)


AS_HELP = ("An admin recording another person's decision on their behalf (recorded as such). You are "
           "otherwise the OS user running this, or the holder of $TETHER_TOKEN.")


@app.command()
def approve(run_id: str, who: Annotated[str | None, typer.Option("--as", help=AS_HELP)] = None,
            reason: Annotated[str, typer.Option(help="Why.")] = "", repo: RepoOpt = Path("."), db: DbOpt = None,
            resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue the run now.")] = True,
            as_json: JsonOpt = False) -> None:
    """Approve the write a paused run waits on, and continue the run.

    Example: tether approve 20261130-0012 --reason "reviewed the diff"
    """
    _decide(run_id, True, who, reason, repo, db, resume, as_json)


@app.command()
def deny(run_id: str, reason: Annotated[str, typer.Option(help="Why (returned to the agent).")],
         who: Annotated[str | None, typer.Option("--as", help=AS_HELP)] = None, repo: RepoOpt = Path("."),
         db: DbOpt = None,
         resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue the run now.")] = True,
         as_json: JsonOpt = False) -> None:
    """Deny the write a paused run waits on; the agent is told why and the run continues.

    Example: tether deny 20261130-0012 --reason "do not touch the signer"
    """
    _decide(run_id, False, who, reason, repo, db, resume, as_json)
