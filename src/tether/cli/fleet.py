"""Commands for the fleet: the kill switch, the org policy and today's usage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tether.cli.common import (
    DbOpt,
    JsonOpt,
    RepoOpt,
    app,
    err,
    fail,
    open_ledger,
    out,
)
from tether.ledger.fleet import ORG_POLICY, Fleet, today
from tether.people import os_user
from tether.policy import parse_policy
from tether.policy.load import org_limits, read_policy_text
from tether.workspace.git import repo_root


def _switch_scope(everything: bool, repo_scope: Path | None, task_scope: str | None) -> str:
    repo = repo_scope and f"repo:{repo_root(repo_scope.resolve())}"
    chosen = [scope for scope in (everything and "all", repo, task_scope and f"task:{task_scope}") if scope]
    if len(chosen) != 1:
        raise fail("give exactly one of --all, --repo DIR, --task ID")
    return str(chosen[0])


AllOpt = Annotated[bool, typer.Option("--all", help="Every run in the store.")]
RepoScopeOpt = Annotated[Path | None, typer.Option("--repo", help="Every run in this repository.")]
TaskScopeOpt = Annotated[str | None, typer.Option("--task", help="One task (or run) id.")]


@app.command()
def brake(everything: AllOpt = False, repo_scope: RepoScopeOpt = None, task_scope: TaskScopeOpt = None,
          reason: Annotated[str, typer.Option(help="Why; shown in every stopped run.")] = "kill switch",
          db: DbOpt = None) -> None:
    """The kill switch: every matching run stops at its next step boundary (work kept, resumable).

    Example: tether brake --all --reason "provider incident"
    """
    scope = _switch_scope(everything, repo_scope, task_scope)
    with open_ledger(db, repo_scope or Path(".")) as ledger:
        Fleet(ledger).set_switch(scope, reason, os_user())
    err.print(f"brake on [bold]{scope}[/]: matching runs stop at their next step")


@app.command()
def release(everything: AllOpt = False, repo_scope: RepoScopeOpt = None, task_scope: TaskScopeOpt = None,
            db: DbOpt = None) -> None:
    """Lift a kill switch; tasks held by it resume their runs.

    Example: tether release --all
    """
    scope = _switch_scope(everything, repo_scope, task_scope)
    with open_ledger(db, repo_scope or Path(".")) as ledger:
        released = Fleet(ledger).release_switch(scope, os_user())
    if not released:
        raise fail(f"no brake on {scope}")
    err.print(f"released {scope}")



fleet_app = typer.Typer(help="The org policy, today's fleet usage and the kill switches. Example: tether fleet "
                        "show")
app.add_typer(fleet_app, name="fleet")


@fleet_app.command("set")
def fleet_set(path: Annotated[Path, typer.Argument(help="Org policy TOML ([fleet] limits and defaults).")],
              repo: RepoOpt = Path("."), db: DbOpt = None) -> None:
    """Store the org policy every run of this store is layered on.

    Example: tether fleet set org-policy.toml
    """
    text = read_policy_text(path)
    parse_policy(text, path)
    with open_ledger(db, repo) as ledger:
        Fleet(ledger).set_setting(ORG_POLICY, text)
    err.print(f"org policy set from {path}")


@fleet_app.command("show")
def fleet_show(repo: RepoOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Today's spend against the org limits, and the switches that are on.

    Example: tether fleet show --json
    """
    from tether.render.fleet import print_fleet

    with open_ledger(db, repo) as ledger:
        fleet = Fleet(ledger)
        limits = org_limits(Fleet(ledger).org_policy())
        usage, switches = fleet.usage(today()), fleet.switches()
    if as_json:
        out.print_json(json.dumps({"limits": limits.model_dump(), "day": today(),
                                   "usage": [vars(u) for u in usage], "switches": [vars(s) for s in switches]}))
    else:
        print_fleet(out, limits, usage, switches)
