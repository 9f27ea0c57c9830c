"""`tether recommend`: the one question, at most three follow-ups, an architecture and a starter policy."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.prompt import Confirm, FloatPrompt, Prompt

from tether.cli.common import JsonOpt, RepoOpt, app, err, fail, out
from tether.recommend import (
    DEFAULT_USD,
    FOLLOW_UPS,
    JUDGES,
    QUESTION,
    Answers,
    RecommendError,
    check_command_for,
    write_policy,
)
from tether.recommend import (
    recommend as recommend_for,
)


@app.command()
def recommend(
    judge: Annotated[str | None, typer.Option(help="Who judges the result: person | evals | metric.")] = None,
    roles: Annotated[bool | None, typer.Option("--roles/--no-roles", help="The work needs several roles at "
                                               "volume (asked only when a person judges).")] = None,
    max_usd: Annotated[float | None, typer.Option("--max-usd", help="What one task may cost, in USD.")] = None,
    protected: Annotated[bool | None, typer.Option("--protected/--no-protected", help="The agent may touch "
                                                   "protected paths, with a person's approval.")] = None,
    repo: RepoOpt = Path("."),
    write: Annotated[Path | None, typer.Option("--write", help="Write the starter policy here "
                                               "(e.g. tether.toml).")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite the --write file.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Which architecture fits the job: one question (who judges the result?) and at most three
    follow-ups, asked on a terminal or given as flags. Answers with the architecture, why (with what
    Tether measured) and a starter tether.toml that `tether doctor` accepts.

    Example: tether recommend --judge evals --max-usd 3 --no-protected --write tether.toml
    """
    asking = sys.stdin.isatty() and not as_json
    if judge is None:
        if not asking:
            raise fail(f"--judge is needed when not on a terminal: {' | '.join(JUDGES)} ({QUESTION})")
        judge = Prompt.ask(QUESTION, choices=list(JUDGES), console=out)
    if judge not in JUDGES:
        raise fail(f"--judge {judge!r} is not one of {', '.join(JUDGES)}")
    if asking:
        if judge == "person" and roles is None:
            roles = Confirm.ask(FOLLOW_UPS["roles"], default=False, console=out)
        if max_usd is None:
            max_usd = FloatPrompt.ask(FOLLOW_UPS["max_usd"], default=DEFAULT_USD, console=out)
        if protected is None:
            protected = Confirm.ask(FOLLOW_UPS["protected"], default=False, console=out)
    try:
        answers = Answers(judge, bool(roles), max_usd, bool(protected))
        result = recommend_for(answers, check_command_for(repo))
        if write is not None:
            write_policy(result, write, force)
    except RecommendError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        out.print_json(json.dumps(result.as_dict()))
    else:
        runs_as = "" if result.runs_as == result.architecture else f" (runs as {result.runs_as} today)"
        out.print(f"[bold]{result.architecture}[/]{runs_as}")
        for reason in result.why:
            out.print(f"  - {reason}", highlight=False, markup=False)
        if write is None:
            out.print("\n" + result.policy, highlight=False, markup=False, soft_wrap=True)
    if write is not None:
        err.print(f"wrote {write}; check it with: tether doctor")
