"""Commands for people's tokens: who may use the web app (and the CLI with $TETHER_TOKEN), as what."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Annotated

import typer

from tether.cli.common import DbOpt, JsonOpt, RepoOpt, app, err, fail, open_ledger, out
from tether.ledger import tokens
from tether.people import acting, administers
from tether.render.text import table_of

token_app = typer.Typer(help="People's tokens for the web app and the CLI. Example: tether token create "
                             "--name alice --role approver", no_args_is_help=True)
app.add_typer(token_app, name="token")

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str | None) -> float | None:
    if text is None:
        return None
    match = _DURATION.match(text.strip())
    if match is None:
        raise fail(f"--ttl: {text!r} is not a duration such as 30d, 12h or 90m")
    return float(match.group(1)) * _SECONDS[match.group(2)]


@token_app.command("create")
def create(name: Annotated[str, typer.Option(help="The person (the name the owner check uses).")],
           role: Annotated[str, typer.Option(help="viewer, approver or admin.")] = "viewer",
           ttl: Annotated[str | None, typer.Option(help="Expire after this long (30d, 12h).")] = None,
           repo: RepoOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Make a token for a person. It is printed once; only its hash is kept.

    Example: tether token create --name alice --role approver --ttl 90d
    """
    with open_ledger(db, repo) as ledger:
        actor = acting(ledger)
        refused = administers(ledger, actor)
        if refused is not None:
            raise fail(f"{refused}: only an admin gives out tokens")
        token, holder = tokens.create(ledger, name, role, actor.name, _duration(ttl))  # type: ignore[arg-type]
    if as_json:
        out.print_json(json.dumps({"id": holder.id, "name": holder.name, "role": holder.role, "token": token,
                                   "expires_at": holder.expires_at}))
        return
    err.print(f"token {holder.id} for {holder.name} ({holder.role}); shown once, keep it secret:")
    out.print(token, highlight=False, soft_wrap=True)


@token_app.command("list")
def listing(repo: RepoOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """The tokens of this store (never the tokens themselves).

    Example: tether token list
    """
    with open_ledger(db, repo) as ledger:
        holders = tokens.listed(ledger)
    if as_json:
        out.print_json(json.dumps([holder.__dict__ | {"active": holder.active} for holder in holders]))
        return
    rows = [[h.id, h.name, h.role, h.created_by, time.strftime("%Y-%m-%d", time.gmtime(h.created_at)),
             "active" if h.active else ("revoked by " + (h.revoked_by or "?") if h.revoked_at else "expired")]
            for h in holders]
    out.print(table_of(["id", "name", "role", "made by", "made", "state"], rows, ("id", "name")))


@token_app.command("revoke")
def revoke(token_id: str, repo: RepoOpt = Path("."), db: DbOpt = None) -> None:
    """Revoke a token at once (its sessions end with it).

    Example: tether token revoke 3f9a1c2b7d10
    """
    with open_ledger(db, repo) as ledger:
        actor = acting(ledger)
        refused = administers(ledger, actor)
        if refused is not None:
            raise fail(f"{refused}: only an admin revokes tokens")
        holder = tokens.revoke(ledger, token_id, actor.name)
    err.print(f"revoked token {holder.id} of {holder.name}")
