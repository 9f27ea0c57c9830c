"""`tether serve`: the web app and its JSON API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tether.cli.common import DbOpt, RepoOpt, app, db_url_of, err, fail


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Where to listen. Beyond loopback, sign-in is always required.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="The port.")] = 8420,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Loopback only: no sign-in, everyone acts as the OS "
                                                            "user running the server.")] = False,
    reports: Annotated[Path | None, typer.Option(help="A folder of HTML reports (backtests, sweeps, audits) "
                                                      "to serve on the evidence page.")] = None,
    repo: RepoOpt = Path("."), db: DbOpt = None,
) -> None:
    """The web app: runs, a run's timeline, the approvals inbox, the fleet and its kill switch, the
    evidence; and its JSON API under /api/ (OpenAPI at /docs). People sign in with their token.

    Example: tether serve --port 8420 --db postgresql+psycopg://tether@db/tether
    """
    import uvicorn

    from tether.web.app import make_app
    from tether.web.auth import is_loopback

    if no_auth and not is_loopback(host):
        raise fail(f"--no-auth listens on loopback only; {host} is not loopback (sign-in is required beyond it)")
    if reports is not None and not reports.is_dir():
        raise fail(f"--reports: {reports} is not a folder")
    url = db_url_of(db, repo)
    application = make_app(url, open_=no_auth, reports=reports.resolve() if reports else None)
    anyone = "; no sign-in: everyone is this OS user" if no_auth else ""
    err.print(f"Tether on http://{host}:{port} (store {url}){anyone}")
    uvicorn.run(application, host=host, port=port, log_level="warning")
