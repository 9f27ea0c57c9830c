"""Commands for other agents' trajectories: import them, backtest the brakes on them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress

from tether.cli.common import (
    DbOpt,
    JsonOpt,
    RepoOpt,
    app,
    err,
    fail,
    open_ledger,
    out,
)
from tether.policy import load_policy

LabelsOpt = Annotated[Path | None, typer.Option("--labels", help="Outcome labels: CSV instance_id,resolved, or "
                                                                "JSON ({id: true|false}, or a SWE-bench report).")]


@app.command("import")
def import_(paths: Annotated[list[Path], typer.Argument(help="Trajectory files or folders (.gz read as is).")],
            repo: RepoOpt = Path("."), db: DbOpt = None, labels: LabelsOpt = None) -> None:
    """Store other agents' trajectories in the ledger as imported runs (idempotent).

    Example: tether import ../shared/data/trajectories/swe-agent__java-verified__multi-swe-bench
    """
    from tether.backtest.importers import discover, load_runs
    from tether.backtest.labels import LabelFinder, label_report, read_labels_file
    from tether.backtest.store import store_run
    from tether.render.reports import print_labels

    finder = LabelFinder(read_labels_file(labels) if labels else None)
    sources: list[str | None] = []
    with open_ledger(db, repo) as ledger:
        total = sum(1 for _ in discover(paths))
        stored = skipped = events = 0
        with Progress(console=err) as progress:
            task = progress.add_task("importing", total=total)
            for run in load_runs(paths, finder=finder):
                sources.append(run.label_source)
                result = store_run(ledger, run)
                stored += not result.skipped
                skipped += result.skipped
                events += result.events
                progress.advance(task)
    print_labels(err, label_report(sources, finder))
    out.print(f"imported {stored} runs ({events} events); {skipped} were already in the store")


@app.command()
def backtest(
    data: Annotated[list[Path], typer.Argument(help="Trajectory files or folders.")],
    policy: Annotated[Path | None, typer.Option("--policy", help="Policy whose budgets and brakes to test.")] = None,
    sweep_: Annotated[bool, typer.Option("--sweep", help="Sweep thresholds: Pareto frontier, fit/test.")] = False,
    max_false_stops: Annotated[float, typer.Option(help="Target false-stop rate for the chosen policy.")] = 0.05,
    test_share: Annotated[float, typer.Option(help="Share of runs held out for the report.")] = 0.5,
    fit_on: Annotated[str | None, typer.Option("--fit-on", help="Fit the sweep on this collection (a folder "
                                                                "given, by name) and report on the others.")] = None,
    fit: Annotated[bool, typer.Option("--fit", help="Fit a stop score (a logistic model over every detector) and "
                                                    "its threshold; print it as [brakes.score].")] = False,
    out_html: Annotated[Path | None, typer.Option("--html", help="Write the sweep's HTML page here.")] = None,
    as_json: JsonOpt = False,
    show_all: Annotated[bool, typer.Option("--all", help="List every run, not only stopped ones.")] = False,
    labels: LabelsOpt = None,
) -> None:
    """Replay other agents' runs through a policy's budgets and brakes: what would it have stopped,
    saved and killed?

    Example: tether backtest ../shared/data/trajectories/* --policy tether.toml --json
    """
    from tether.backtest.engine import backtest_run, cost_profile, summarize
    from tether.backtest.importers import load_runs
    from tether.backtest.labels import LabelFinder, label_report, read_labels_file
    from tether.backtest.report import sweep_html
    from tether.backtest.sweep import sweep
    from tether.render.reports import print_backtest, print_cost_profile, print_labels, print_sweep

    loaded = load_policy(policy) if policy else None
    finder = LabelFinder(read_labels_file(labels) if labels else None)
    runs = list(load_runs(data, finder=finder))
    if not runs:
        raise fail("no trajectories found in " + ", ".join(map(str, data)))
    labelled = label_report([run.label_source for run in runs], finder)
    print_labels(err, labelled)
    if fit:
        _fit(runs, fit_on, test_share, max_false_stops, as_json)
        return
    if sweep_:
        try:
            result = sweep(runs, max_false_stops, test_share, fit_on=fit_on)
        except ValueError as exc:
            raise fail(str(exc)) from exc
        if out_html:
            out_html.write_text(sweep_html(result, f"Brake sweep over {len(runs)} runs"))
            err.print(f"wrote {out_html}")
        if as_json:
            out.print_json(json.dumps({
                "fit_runs": result.fit_runs, "test_runs": result.test_runs, "configs": result.configs,
                "target_false_stop_rate": max_false_stops,
                "frontier": [{"policy": p.policy_toml(), "fit": p.fit, "test": p.test} for p in result.frontier],
                "chosen": None if result.chosen is None else {"policy": result.chosen.policy_toml(),
                                                              "fit": result.chosen.fit, "test": result.chosen.test},
            }))
        else:
            print_sweep(out, result)
        return
    if loaded is None:
        raise fail("give --policy FILE (or --sweep)")
    verdicts = [backtest_run(loaded, run) for run in runs]
    by_source = {source: summarize([v for v in verdicts if v.source == source])
                 for source in sorted({v.source for v in verdicts})}
    overall = summarize(verdicts)
    if as_json:
        out.print_json(json.dumps({
            "policy": str(policy), "summary": overall.as_dict(), "labels": labelled.as_dict(),
            "cost_profile": cost_profile(runs),
            "by_source": {k: v.as_dict() for k, v in by_source.items()},
            "runs": [dict(vars(v), saved_usd=v.saved_usd) for v in verdicts],
        }))
        return
    print_backtest(out, verdicts, overall, by_source, show_all)
    print_cost_profile(out, cost_profile(runs))


def _fit(runs: list, fit_on: str | None, test_share: float, max_false_stops: float, as_json: bool) -> None:
    from tether.backtest.fit import fit_score
    from tether.backtest.sweep import split
    from tether.render.reports import print_fit

    collections = sorted({run.collection for run in runs})
    if fit_on is not None and fit_on not in collections:
        raise fail(f"--fit-on {fit_on!r}: no runs from it; the collections are {', '.join(collections)}")
    sides = [("fit" if run.collection == fit_on else "test") if fit_on else split(run, test_share) for run in runs]
    try:
        result = fit_score(runs, sides, max_false_stops)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        out.print_json(json.dumps({"policy": result.policy_toml(), "fit": result.fit, "test": result.test,
                                   "fit_runs": result.fit_runs, "test_runs": result.test_runs,
                                   "carried_by": dict(result.carried_by),
                                   "target_false_stop_rate": max_false_stops}))
    else:
        print_fit(out, result, max_false_stops)


@app.command("export")
def export(run: Annotated[str, typer.Argument(metavar="RUN", help="The run to export, or `otel`.")],
           otel_run: Annotated[str | None, typer.Argument(metavar="[RUN]", help="With `otel`: the run.")] = None,
           format_: Annotated[str, typer.Option("--format", help="The format: atif.")] = "atif",
           output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")] = None,
           since: Annotated[str | None, typer.Option(help="With `otel`: every run started since (30d).")] = None,
           repo: RepoOpt = Path("."), db: DbOpt = None) -> None:
    """Export a run's record in an interchange format (ATIF v1.4: Harbor's trajectory format), for
    tools that read other agents' trajectories; or, as `tether export otel RUN|--since 30d`, to an
    OpenTelemetry collector (OTLP/HTTP, the OTEL_* variables), its spans with their recorded times.

    Example: tether export 20261130-054701-324776 --format atif -o run.atif.json
    """
    if run == "otel":
        _export_otel(otel_run, since, repo, db)
        return
    from tether.backtest.atif import export_atif

    if format_ != "atif":
        raise fail(f"--format {format_!r}: Tether exports atif (or `tether export otel RUN`)")
    with open_ledger(db, repo) as ledger:
        found = ledger.get_run(run)
        document = json.dumps(export_atif(found.id, ledger.events(found.id)), indent=2)
    if output is None:
        print(document)
    else:
        output.write_text(document + "\n")
        err.print(f"wrote {output}")


def _export_otel(run: str | None, since: str | None, repo: Path, db: str | None) -> None:
    import time

    from tether.gc import parse_age
    from tether.telemetry.export import configured, export_runs

    if (run is None) == (since is None):
        raise fail("tether export otel: name a RUN or give --since (e.g. --since 30d)")
    if not configured():
        raise fail("no OpenTelemetry endpoint: set OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://localhost:4318)")
    with open_ledger(db, repo) as ledger:
        if run is not None:
            run_ids = [ledger.get_run(run).id]
        else:
            try:
                cutoff = time.time() - parse_age(since or "")
            except ValueError as exc:
                raise fail(f"--since: {exc}") from exc
            run_ids = [row.id for row in ledger.list_runs(limit=None, since=cutoff)]
        exported = export_runs(ledger, run_ids)
    err.print(f"exported {len(run_ids)} run(s), {exported} events, as spans and metrics")
