"""Commands for the queue: submit tasks, run workers, recover, list and show tasks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tether.cli.common import (
    DbOpt,
    JsonOpt,
    RepoOpt,
    app,
    err,
    fail,
    open_ledger,
    open_tasks,
    out,
)
from tether.queue import engine


@app.command()
def submit(
    instruction: Annotated[str, typer.Argument(help="What the agent should do.")],
    repo: RepoOpt = Path("."),
    key: Annotated[str | None, typer.Option(help="Idempotency key: the same key is always the same task.")] = None,
    priority: Annotated[int, typer.Option(help="0 runs first; larger numbers wait.")] = 0,
    policy: Annotated[Path | None, typer.Option("--policy", help="Policy file (default: tether.toml).")] = None,
    model: Annotated[str | None, typer.Option(help="Model spec (default: the policy's).")] = None,
    url: Annotated[str | None, typer.Option("--url", help="The repository by its git URL instead of a local "
                                            "path: each worker fetches it into a mirror of its own.")] = None,
    branch: Annotated[str | None, typer.Option("--branch", help="With --url: the branch to start from "
                                               "(default: the remote's default branch).")] = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue a task for the workers; prints its id.

    Example: tether submit "Fix the failing test" --url https://git.example.com/acme/shop.git --branch main
    """
    with open_tasks(db, repo) as (_, tasks):
        task_id, created = tasks.submit(instruction, repo, key, priority, policy, model, url=url, branch=branch)
    if as_json:
        out.print_json(json.dumps({"task_id": task_id, "created": created}))
    else:
        out.print(task_id)
        err.print("queued" if created else "already submitted with this key; nothing new queued")


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(min=1, help="Tasks this worker runs at once.")] = 1,
    worker_id: Annotated[str | None, typer.Option("--id", help="Stable executor id (default: the host name); "
                                                  "a restarted worker recovers the tasks of its id.")] = None,
    idle_exit: Annotated[float | None, typer.Option(help="Exit after this many seconds with no task.")] = None,
    rescan: Annotated[float, typer.Option(min=0.01, help="Seconds between looks at the queue when nothing wakes the "
                                          "worker (a submit and a finished task do, at once).")] = engine.RESCAN_S,
    refresh_outcomes: Annotated[str | None, typer.Option(
        "--refresh-outcomes", help="Also refresh delivered runs' outcomes (history and forge) this often: 6h, 1d.")]
    = None,
    repo: RepoOpt = Path("."),
    db: DbOpt = None,
) -> None:
    """Take tasks from the queue and run them with the normal runner until stopped (Ctrl-C).

    Example: tether worker --id build-1 --concurrency 2 --refresh-outcomes 6h
    """
    from tether.gc import parse_age
    from tether.queue.worker import serve

    try:
        every = parse_age(refresh_outcomes) if refresh_outcomes else None
        if every is not None and every < 60:
            raise ValueError(f"{refresh_outcomes!r} is too often (a minute at least)")
    except ValueError as exc:
        raise fail(f"--refresh-outcomes: {exc}") from exc
    executor = worker_id or engine.default_executor_id()
    with open_ledger(db, repo) as ledger:
        err.print(f"worker [bold]{executor}[/] on {ledger.url}, {concurrency} at a time")
        serve(ledger, executor, concurrency, idle_exit, lambda line: err.print(line, highlight=False), every,
              rescan)


@app.command()
def recover(executor: Annotated[str, typer.Option("--executor", help="The dead worker's id.")],
            repo: RepoOpt = Path("."), db: DbOpt = None) -> None:
    """Put a dead worker's unfinished tasks back on the queue; live workers resume their runs.

    Example: tether recover --executor build-1
    """
    with open_tasks(db, repo) as (_, tasks):
        recovered = tasks.recover(executor)
    for task_id in recovered:
        out.print(task_id)
    err.print(f"{len(recovered)} task(s) of {executor} queued again")


@app.command("tasks")
def tasks_(state: Annotated[str | None, typer.Option(help="Only tasks in this state.")] = None,
           limit: Annotated[int, typer.Option(min=1)] = 50, repo: RepoOpt = Path("."), db: DbOpt = None,
           as_json: JsonOpt = False) -> None:
    """List tasks, newest first.

    Example: tether tasks --json
    """
    from tether.render.fleet import print_tasks

    with open_tasks(db, repo) as (_, tasks):
        found = tasks.list(limit, state)
    if as_json:
        out.print_json(json.dumps([task.as_dict() for task in found]))
    else:
        print_tasks(out, found)


@app.command()
def task(task_id: Annotated[str, typer.Argument(help="Task id or a unique prefix.")], repo: RepoOpt = Path("."),
         db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Show one task: state, run, attempts.

    Example: tether task 20261130-0012
    """
    from tether.render.fleet import print_tasks

    with open_tasks(db, repo) as (_, tasks):
        found = tasks.get(task_id)
    if as_json:
        out.print_json(json.dumps(found.as_dict()))
    else:
        print_tasks(out, [found])
