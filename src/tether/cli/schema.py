"""Commands that print Tether's public contracts."""

from __future__ import annotations

import typer

from tether.cli.common import app

schema_app = typer.Typer(help="The public contracts: the event log's vocabulary. Example: tether schema events",
                         no_args_is_help=True)
app.add_typer(schema_app, name="schema")


@schema_app.command("events")
def schema_events() -> None:
    """Print the JSON Schema of every event type's payload (and the run statuses): the contract for
    the UI, telemetry and exports.

    Example: tether schema events > events.schema.json
    """
    from tether.ledger.events import schema_document

    print(schema_document())
