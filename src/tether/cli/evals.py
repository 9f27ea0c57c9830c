"""`tether eval`: run a suite under several configs, rebuild a report, import Exercism tasks.
`tether eval SUITE ...` is short for `tether eval run SUITE ...`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from typer.core import TyperGroup

from tether.cli.common import app, err, fail, out
from tether.evals.exercism import import_exercism
from tether.evals.matrix import Eval, build_results, load_configs, open_eval, run_eval
from tether.evals.matrix import Progress as CellProgress
from tether.evals.report import write_reports
from tether.evals.suite import load_suite
from tether.ledger import Ledger
from tether.render.reports import print_eval


class EvalGroup(TyperGroup):
    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]  # tether eval SUITE --config ...
        return super().resolve_command(ctx, args)


eval_app = typer.Typer(cls=EvalGroup, help="Compare agent configs on a suite of tasks with hidden checks.\n\n"
                       "Example: tether eval run evals/suite.toml --config a.toml --config b.toml",
                       no_args_is_help=True)
app.add_typer(eval_app, name="eval")


def _report(results: dict[str, Any], out_dir: Path, as_json: bool) -> None:
    json_path, html_path = write_reports(results, out_dir, f"Tether eval {results['eval_id']}")
    if as_json:
        out.print_json(json.dumps(results))
    else:
        print_eval(out, results)
        err.print(f"wrote {json_path} and {html_path}")


@eval_app.command("run")
def run(
    suite: Annotated[Path, typer.Argument(help="The suite directory (one folder with a task.toml per task).")],
    config: Annotated[list[Path], typer.Option(
        "--config", help="A policy file to run the suite under; repeat it to compare several (the first is "
                         "the baseline).")],
    tasks: Annotated[str | None, typer.Option(help="Only tasks matching these globs (comma-separated).")] = None,
    repeats: Annotated[int, typer.Option(min=1, help="Runs of each task under each config.")] = 1,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes running cells at once.")] = 1,
    out_dir: Annotated[Path, typer.Option("--out", help="Where the eval lives; run again to continue it.")] = Path(
        "eval-out"),
    db: Annotated[str | None, typer.Option("--db", help="Store URL (default: a SQLite file in --out).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Run every task x config x repeat as a Tether run and score it with the hidden checks.

    Example: tether eval run evals/suite.toml --config a.toml --config b.toml --repeats 3
    """
    chosen, configs = load_suite(suite, tasks), load_configs(config)  # refuse bad input before anything
    ev: Eval = open_eval(out_dir, db)
    ev.suite, ev.tasks, ev.configs, ev.repeats = suite.resolve(), chosen, configs, repeats
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False) as bar:
        job = bar.add_task(f"eval {ev.id}", total=None)

        def on_progress(update: CellProgress) -> None:
            if update.row is None:
                bar.update(job, total=update.total, completed=update.done)
                return
            row = update.row
            mark = "[green]solved[/]" if row["passed_hidden"] else (
                "[yellow]escaped defect[/]" if row["escaped_defect"] else "[red]not solved[/]")
            bar.console.print(f"{row['task']} · {row['config']} #{row['repeat']}: {mark} ({row['status']}"
                              f"{' ' + row['stop_rule'] if row['stop_rule'] else ''}, {row['latency_s']:.1f}s, "
                              f"{row['tokens']:,} tokens) run {row['run_id']}", highlight=False)
            bar.update(job, completed=update.done)

        results = run_eval(ev, workers, on_progress)
    _report(results, out_dir, as_json)
    err.print(f"runs are in {ev.db_url}: tether show RUN_ID --db {ev.db_url}")


@eval_app.command("report")
def report(
    out_dir: Annotated[Path, typer.Argument(help="An eval's directory (its --out).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Rebuild results.json and report.html from the store, without running anything.

    Example: tether eval report evals/out
    """
    if not (out_dir / "eval.json").is_file():
        raise fail(f"{out_dir} holds no eval (no eval.json)")
    ev = open_eval(out_dir)
    ledger = Ledger(ev.db_url)
    try:
        results = build_results(ledger, ev.id)
    finally:
        ledger.close()
    _report(results, out_dir, as_json)


@eval_app.command("import-exercism")
def import_exercism_cmd(
    source: Annotated[Path, typer.Argument(help="An Exercism tasks folder with tasks.jsonl "
                                                "(e.g. shared/data/tasks/exercism-python).")],
    out_dir: Annotated[Path, typer.Argument(help="The suite directory to write.")],
    tasks: Annotated[str | None, typer.Option(help="Only these exercises (comma-separated names).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many kept tasks.")] = None,
    validate: Annotated[bool, typer.Option(help="Keep a task only if the reference solution passes and the "
                                                "stub fails.")] = True,
    agent_s: Annotated[float, typer.Option("--agent-s", min=1, help="Each task's time limit for the agent.")] = 300,
) -> None:
    """Write an eval suite from Exercism exercises: visible half of the tests, hidden full tests.

    Example: tether eval import-exercism ~/exercism/python evals/exercism
    """
    names = [n.strip() for n in tasks.split(",")] if tasks else None
    imported = import_exercism(source, out_dir, names, validate, limit, agent_s)
    for item in imported:
        if not item.kept:
            err.print(f"left out {item.name}: {item.reason}", highlight=False)
    kept = [item for item in imported if item.kept]
    err.print(f"wrote {len(kept)} task(s) to {out_dir} ({sum(i.visible_tests for i in kept)} visible of "
              f"{sum(i.hidden_tests for i in kept)} tests)")
    if not kept:
        raise typer.Exit(1)
