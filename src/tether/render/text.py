"""Text helpers every printer shares: shortening, failure tails, diffs, tables that keep ids whole."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table


def short(value: str, width: int) -> str:
    value = " ".join(value.split())
    return value if len(value) <= width else value[: width - 1] + "…"


FAILURE_LINES = 12


def failure_tail(output: str) -> str:
    """The last lines of a failing check's output: where test runners say what went wrong."""
    lines = [line for line in output.rstrip().splitlines() if line.strip()]
    return "\n".join(lines[-FAILURE_LINES:])


def show_diff(console: Console, diff: str) -> None:
    """A diff whole: highlighted on a terminal, its lines as they are when piped (never cut at 80)."""
    if not diff:
        return
    if console.is_terminal:
        console.print(Syntax(diff.rstrip("\n"), "diff", theme="ansi_dark", word_wrap=True))
    else:
        console.print(diff.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)


STATUS_STYLE = {"succeeded": "bold green", "failed": "bold red", "stopped": "bold yellow",
                "awaiting_approval": "bold cyan", "running": "bold", "waiting": "yellow", "queued": "dim",
                "cancelled": "dim red"}


def table_of(columns: list[str], rows: list[list[Any]], whole: tuple[str, ...], **options: Any) -> Table:
    """A table whose `whole` columns (ids, states, model names) are never shortened or wrapped, so
    they can be copied at any width; the other columns give way."""
    table = Table(**options)
    for index, header in enumerate(columns):
        if header in whole:
            width = max([len(header), *(len(str(row[index])) for row in rows)])
            table.add_column(header, no_wrap=True, min_width=width)
        else:
            table.add_column(header, overflow="ellipsis")
    for row in rows:
        table.add_row(*row)
    return table
