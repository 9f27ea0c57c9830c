"""`tether deliver`: push a finished run's branch and open or update its pull request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from tether.cli.common import DbOpt, JsonOpt, RepoOpt, app, fail, open_ledger, out
from tether.delivery.deliver import deliver
from tether.ledger.queries import run_policy


@app.command("deliver")
def deliver_command(
    run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix.")],
    mode: Annotated[Literal["push", "pull_request"] | None,
                    typer.Option(help="Instead of the run's \\[delivery] mode.")] = None,
    remote: Annotated[str | None, typer.Option(help="Instead of the run's \\[delivery] remote (a name or a URL).")]
    = None,
    repo: RepoOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False,
) -> None:
    r"""Deliver a finished run as its policy's \[delivery] says (again, after a failure): push its
    branch and open or update its one pull request. The token comes from the environment variable
    \[delivery] token_env names. Exit 1 when the remote or the forge refused (recorded on the run).

    Example: tether deliver 20261130-0012 --mode pull_request
    """
    with open_ledger(db, repo) as ledger:
        policy = run_policy(ledger.events(ledger.get_run(run_id).id))
        if policy is None:
            raise fail(f"run {run_id} was imported; it has no branch to deliver")
        overrides = {key: value for key, value in (("mode", mode), ("remote", remote)) if value is not None}
        delivered = deliver(ledger, run_id, policy.delivery.model_copy(update=overrides))
    if as_json:
        out.print_json(json.dumps(delivered.as_json()))
        return
    where = f"{delivered.forge} #{delivered.number} {delivered.url}" if delivered.url else delivered.remote
    out.print(f"[green]delivered[/]: {delivered.ref} at {delivered.commit[:10]} to {where}"
              + (" (opened)" if delivered.created else " (updated)" if delivered.number else ""))
    for warning in delivered.warnings:
        out.print(f"[yellow]warning[/]: {warning}")
