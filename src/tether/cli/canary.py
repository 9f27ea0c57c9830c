"""`tether canary`: a candidate policy on a share of the queued tasks until a sequential test decides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tether.cli.common import ByOpt, DbOpt, JsonOpt, UrlOpt, app, err, fail, open_ledger, out, repository_name
from tether.gate.canary import CanaryStatus, canaries, start_canary, status, stop_canary
from tether.ledger.fleet import Fleet
from tether.people import os_user
from tether.render.canary import canary_html, print_canary

canary_app = typer.Typer(help="Canaries: a candidate configuration on a share of the queued tasks. Example: "
                         "tether canary status")
app.add_typer(canary_app, name="canary")

StoreRepoOpt = Annotated[Path | None, typer.Option("--repo", help="Only this repository's tasks (default: every "
                                                   "repository's); also where the store is found.")]


def _as_json(found: CanaryStatus) -> dict[str, Any]:
    decided = found.canary.decided
    return {"canary": found.canary.id, "repo": found.canary.started.repo, "share": found.canary.started.share,
            "candidate_path": found.canary.started.candidate_path, "routing": found.canary.routing,
            "decision": decided.decision if decided else None, "reason": decided.reason if decided else None,
            "stopped": found.canary.stopped is not None, "supported": found.verdict, **found.evidence()}


@canary_app.command("start")
def canary_start(
    candidate: Annotated[Path, typer.Option("--candidate", help="The candidate policy (a tether.toml).")],
    share: Annotated[float, typer.Option("--share", help="The share of queued tasks it takes, e.g. 0.2.")],
    repo: StoreRepoOpt = None, url: UrlOpt = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Error rate of the sequential test.")] = 0.05,
    min_tasks: Annotated[int, typer.Option("--min-tasks", help="No decision before this many tasks.")] = 100,
    max_tasks: Annotated[int, typer.Option("--max-tasks", help="No decision by then: the current stays.")] = 2000,
    cost_tolerance: Annotated[float, typer.Option("--cost-tolerance",
                                                  help="How much dearer the candidate may be (0.2: 20%).")] = 0.2,
    by: ByOpt = None, db: DbOpt = None, as_json: JsonOpt = False,
) -> None:
    """Route a share of the queued tasks to a candidate policy; workers judge it after each task and
    promote it, roll it back, or let it run out (each decision an event in the canary's log).

    Example: tether canary start --candidate cand.toml --share 0.2 --repo ../shop
    """
    scope = repository_name(repo or Path("."), url) if repo is not None or url is not None else None
    with open_ledger(db, repo or Path(".")) as ledger:
        canary = start_canary(ledger, candidate, share=share, repo=scope, by=by or os_user(),
                              org_text=Fleet(ledger).org_policy(), alpha=alpha, min_tasks=min_tasks,
                              max_tasks=max_tasks, cost_tolerance=cost_tolerance)
    if as_json:
        out.print_json(json.dumps({"canary": canary.id}))
        return
    out.print(f"canary {canary.id}: {share:.0%} of the queued tasks of {scope or 'every repository'} run with "
              f"{candidate}")


@canary_app.command("status")
def canary_status(
    canary_id: Annotated[str | None, typer.Argument(help="A canary id (default: the newest).")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Also write an HTML report with plots here.")] = None,
    repo: StoreRepoOpt = None, db: DbOpt = None, as_json: JsonOpt = False,
) -> None:
    """The canary's arms, the fix-rate and cost differences with their always-valid intervals, and
    its decision (or the one the evidence supports now).

    Example: tether canary status --html canary.html
    """
    with open_ledger(db, repo or Path(".")) as ledger:
        if canary_id is None:
            found = canaries(ledger)
            if not found:
                raise fail("no canary in this store; start one with `tether canary start`")
            canary_id = found[0].id
        current = status(ledger, canary_id)
    if html is not None:
        html.write_text(canary_html(current), encoding="utf-8")
        err.print(f"report: {html}")
    if as_json:
        out.print_json(json.dumps(_as_json(current)))
        return
    print_canary(out, current)


@canary_app.command("stop")
def canary_stop(
    canary_id: Annotated[str, typer.Argument(help="The canary id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (e.g. the candidate is now tether.toml).")] = "",
    by: ByOpt = None, repo: StoreRepoOpt = None, db: DbOpt = None,
) -> None:
    """End a canary: it routes no task from now on (a promoted candidate's policy should be committed
    as the repository's tether.toml first).

    Example: tether canary stop canary-20261130-0900-1a2b3c --reason "cand.toml is now tether.toml"
    """
    with open_ledger(db, repo or Path(".")) as ledger:
        stop_canary(ledger, canary_id, by=by or os_user(), reason=reason)
    out.print(f"canary {canary_id} stopped")
