"""`tether metrics serve`: the store's runs as Prometheus metrics on /metrics."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from tether.cli.common import DbOpt, RepoOpt, app, err, fail, open_ledger

metrics_app = typer.Typer(help="Prometheus metrics of the store's runs. Example: tether metrics serve --port 9464",
                          no_args_is_help=True)
app.add_typer(metrics_app, name="metrics")


@metrics_app.command("serve")
def serve(port: Annotated[int, typer.Option(help="The port of /metrics.")] = 9464,
          host: Annotated[str, typer.Option(help="Where to listen (loopback by default).")] = "127.0.0.1",
          repo: RepoOpt = Path("."), db: DbOpt = None) -> None:
    """Serve /metrics in Prometheus's text format (runs by status, USD, tokens, denials by rule,
    brake stops, shadowed brakes, interrupts, runs awaiting approval), read from the store at each
    scrape, until Ctrl-C.

    Example: tether metrics serve --port 9464
    """
    from prometheus_client import start_http_server
    from prometheus_client.registry import CollectorRegistry

    from tether.telemetry.prometheus import StoreCollector

    with open_ledger(db, repo) as ledger:
        registry = CollectorRegistry()
        registry.register(StoreCollector(ledger))
        try:
            server, _thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        err.print(f"metrics on http://{host}:{port}/metrics (Ctrl-C stops)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            server.shutdown()
