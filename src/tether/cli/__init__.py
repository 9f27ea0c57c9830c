"""The command line: parsing and printing only; the library does the work. Each command group
lives in its own module; errors a person can act on are mapped to a message and an exit code here,
once."""

from __future__ import annotations

from importlib import import_module, metadata
from typing import Annotated

import typer
from sqlalchemy.exc import OperationalError

from tether.cli.common import app, err, out
from tether.errors import TetherError


def _version(value: bool) -> None:
    if value:
        out.print(f"tether {metadata.version('tether')}")
        raise typer.Exit(0)


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Print the version and exit.")] = False) -> None:
    """Tether: run coding agents on a short leash.

    Example: tether init && tether doctor && tether run "Fix the failing test" --model openai:gpt-4o-mini"""


# The command groups, in the order --help lists them; each registers its commands on import.
for _group in ("runs", "delivery", "gate", "canary", "approvals", "queue", "fleet", "models", "backtest", "evals",
               "gateway", "serve", "tokens", "memory", "brakes", "metrics", "report", "recommend", "schema"):
    import_module(f"tether.cli.{_group}")


def run() -> None:
    """The `tether` program."""
    try:
        app()
    except TetherError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise SystemExit(exc.exit_code) from exc
    except OperationalError as exc:  # the store refused (read-only, locked, gone): its own words, no trace
        err.print(f"[bold red]error:[/] the store refused: {exc.orig}", highlight=False)
        raise SystemExit(2) from exc
