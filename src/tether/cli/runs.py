"""Commands for one run: set up, run, inspect, verify, resume, replay, end and clean up."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from tether import runner
from tether.cli.common import (
    STARTER,
    DbOpt,
    JsonOpt,
    RepoOpt,
    app,
    budget_of,
    checked_root,
    ensure_local_model,
    err,
    fail,
    finish_run,
    layered_policy,
    open_ledger,
    open_tasks,
    out,
    terminal_approver,
)
from tether.demo import DEFAULT_DEMO_MODEL, DEMO_TURNS, instruction, prepare_demo, verdict
from tether.ledger import UnknownRun
from tether.ledger.queries import run_policy, summarize
from tether.people import os_user
from tether.policy import POLICY_FILE, find_policy, load_policy
from tether.queue.tasks import TaskError
from tether.render.runs import print_events, print_finding, print_replay, print_summary
from tether.render.steps import StepPrinter
from tether.render.text import table_of
from tether.replay import replay_run
from tether.workspace.git import head_commit, repo_root
from tether.workspace.project import CommitFiles, detect


@app.command()
def init(repo: RepoOpt = Path("."), force: Annotated[bool, typer.Option(help="Overwrite.")] = False) -> None:
    """Write a commented starter tether.toml at the repository root.

    Example: tether init --repo ~/src/app
    """
    target = repo_root(repo.resolve()) / POLICY_FILE
    if target.exists() and not force:
        raise fail(f"{target} exists; pass --force to overwrite it")
    plan = detect(CommitFiles(target.parent, head_commit(target.parent)))
    text = STARTER.read_text().replace(
        "# Without setup, it is detected", f"# Detected here: {plan.note}.\n# Without setup, it is detected", 1)
    target.write_text(text)
    out.print(f"wrote {target} (environment: {plan.note})")


@app.command()
def run(
    instruction: Annotated[str, typer.Argument(help="What the agent should do.")],
    repo: RepoOpt = Path("."),
    model: Annotated[str | None, typer.Option(help="local:NAME | local:/path.gguf | openai:MODEL | anthropic:MODEL | "
                                                   "scripted:PATH")] = None,
    policy: Annotated[Path | None, typer.Option("--policy", help="Policy file (default: tether.toml).")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="API base URL for openai/anthropic.")] = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
    no_input: Annotated[bool, typer.Option("--no-input", help="Never prompt; pause for approvals.")] = False,
    agent: Annotated[str | None, typer.Option(help="Run an external agent as the loop: claude-code, codex, or "
                                                   "command:\"CLI ...\" (any CLI that reads OPENAI_BASE_URL), behind "
                                                   "the run's model gateway, its tool calls through the guard; "
                                                   "--model is its upstream.")] = None,
    spec: Annotated[Path | None, typer.Option("--spec", help="A spec (markdown) given with the task: a factory "
                                                              "run has it approved, by its hash, before it "
                                                              "starts.")] = None,
) -> None:
    """Run an agent on a task in a fresh worktree, under the policy.

    Example: tether run "Fix the failing test in tests/test_parser.py" --model local:qwen2.5-coder-1.5b
    """
    root = checked_root(repo, policy)
    if spec is not None:
        try:
            text = spec.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(f"--spec: cannot read {spec}: {exc}") from exc
        if not text.strip():
            raise fail(f"--spec: {spec} is empty")
        instruction = f"{instruction}\n\nThe specification ({spec.name}):\n\n{text}"
    with open_ledger(db, root) as ledger:
        loaded, policy_path = layered_policy(root, policy, ledger)
        spec = runner.RunSpec(instruction, root, loaded, policy_path, model, base_url, agent=agent)
        summary = runner.start_run(ledger, spec, on_event=StepPrinter(err),
                                   approver=None if no_input else terminal_approver())
    finish_run(summary, as_json, loaded.budget.model_dump())


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

    root = checked_root(repo, policy)
    with open_ledger(db, root) as ledger:
        loaded, _ = layered_policy(root, policy, ledger)
    err.print(f"doctor: {root} at {head_commit(root)[:10]}; setting up may take a few minutes the first time")
    diagnosis = diagnose(root, loaded, say=lambda finding: print_finding(out, finding))
    if not loaded.checks:
        out.print("[yellow]no \\[\\[checks]] in the policy: nothing tells a run whether it worked[/]")
    raise typer.Exit(0 if diagnosis.setup_works else 1)


@app.command()
def audit(
    repo: Annotated[Path, typer.Argument(help="The repository (default: this one).")] = Path("."),
    policy: Annotated[Path | None, typer.Option("--policy", help="Policy file (default: tether.toml).")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Write the audit as HTML here.")] = None,
    db: DbOpt = None, as_json: JsonOpt = False,
) -> None:
    """Is this repository ready for agents? Its tests in the sandbox (twice, for flakiness), CI,
    CODEOWNERS against what the policy protects, the policy's bounds, secrets in its files and
    recent history, large files, docs that say how to test: a score, and the fix for each gap.
    Exit 0 at a score of 80 or more, 1 below.

    Example: tether audit ../shop --html audit.html
    """
    from tether.audit import Gap
    from tether.audit import audit as run_audit
    from tether.render.reports import audit_html, print_gap

    root = checked_root(repo, policy)
    with open_ledger(db, root) as ledger:
        loaded, found_at = layered_policy(root, policy, ledger)
    err.print(f"audit: {root} at {head_commit(root)[:10]} (the tests run twice; the first time may set up "
              "the environment)")
    def say(gap: Gap) -> None:
        if not as_json:
            print_gap(out, gap)

    result = run_audit(root, loaded, found_at is not None, say=say)
    if html is not None:
        html.write_text(audit_html(result))
        err.print(f"wrote {html}")
    if as_json:
        out.print_json(json.dumps(result.as_dict()))
    else:
        out.print(f"[bold]readiness: {result.score}/100[/]")
    raise typer.Exit(0 if result.score >= 80 else 1)


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
    except FileExistsError as exc:
        raise fail(str(exc)) from exc
    spec_model = f"scripted:{DEMO_TURNS}" if scripted else model
    err.print(f"[bold]Tether demo[/] in {sample.path}: the raindrops exercise, whose test fails.")
    if scripted:
        err.print("[dim]The agent is a scripted trajectory (no model is called): it tries a forbidden "
                  "download, submits a wrong fix, and recovers.[/]")
    ensure_local_model(spec_model)
    spec = runner.RunSpec(instruction(), sample.path, policy, policy_path, spec_model, base_url)
    with open_ledger(None, sample.path) as ledger:
        summary = runner.start_run(ledger, spec, on_event=StepPrinter(err))
        verified = ledger.verify(summary["run_id"])
    if not as_json:
        err.print()
        err.print(f"[bold]{verdict(summary)}[/]")
        err.print(f"evidence: the event log of {verified.checked} events "
                  f"{'verifies' if verified.ok else 'DOES NOT verify'} (tether verify {summary['run_id']})")
        err.print(f"          the delivered change: git -C {sample.path} show {summary['branch']}")
        err.print(f"          every event: tether show {summary['run_id']} --events --repo {sample.path}")
    finish_run(summary, as_json, policy.budget.model_dump())


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
               f"{(row.summary or {}).get('usage', {}).get('usd', 0):.4f}", _would_stop(row.summary),
               row.instruction[:50]] for row in rows]
    # the branch is tether/<run id>: `show` and --json name it
    out.print(table_of(["run", "status", "steps", "usd", "shadow", "instruction"], listed, ("run", "status")))


def _would_stop(summary: dict | None) -> str:
    """What a brake or budget in shadow mode would have stopped the run at, first."""
    shadowed = (summary or {}).get("shadowed") or []
    return f"{shadowed[0]['detector']} @ step {shadowed[0]['step']}" if shadowed else ""


@app.command()
def show(run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix.")], repo: RepoOpt = Path("."),
         db: DbOpt = None, as_json: JsonOpt = False,
         events: Annotated[bool, typer.Option("--events", help="List every event.")] = False,
         full: Annotated[bool, typer.Option("--full", help="With --events: whole payloads, not one line each.")]
         = False,
         html: Annotated[Path | None, typer.Option("--html", help="A research run: write the plot of its metric "
                                                   "against iterations here; a factory run: its candidates' "
                                                   "curves and groups.")] = None) -> None:
    """Show a run's summary (and events), derived from its event log.

    Example: tether show 20261130-0012 --events --full
    """
    with open_ledger(db, repo) as ledger:
        row = ledger.get_run(run_id)
        recorded = ledger.events(row.id)
    summary = summarize(row, recorded)
    if html is not None:
        from tether.render.factory import factory_html
        from tether.render.research import research_html

        policy = run_policy(recorded)
        if "factory" in summary:
            html.write_text(factory_html(summary))
        elif "research" in summary and policy is not None:
            html.write_text(research_html(summary, policy.research.metric or "", policy.research.direction))
        else:
            raise fail(f"run {row.id} is neither a research nor a factory run: --html plots those")
        err.print(f"wrote {html}")
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
        summary = runner.resume_run(ledger, run_id, on_event=StepPrinter(err), approver=terminal_approver())
        budget = budget_of(ledger, summary["run_id"])
    finish_run(summary, as_json, budget)


@app.command()
def replay(
    run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix.")],
    against_policy: Annotated[Path | None, typer.Option("--against-policy", help="Replay under this policy.")] = None,
    repo: RepoOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False,
) -> None:
    """Re-run a recorded run with its recorded model responses (no model is called) and compare each
    step; or show where another policy would have decided differently. Exit 0 when identical.

    Example: tether replay 20261130-0012 --against-policy strict.toml
    """
    policy = load_policy(against_policy) if against_policy else None
    with open_ledger(db, repo) as ledger:
        report = replay_run(ledger, run_id, policy, str(against_policy or "recorded"),
                            on_event=None if as_json else StepPrinter(err))
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
    else:
        print_replay(out, report)
    raise typer.Exit(0 if report.identical else 1)


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
                summary = runner.cancel_run(ledger, task_id, reason, os_user())
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
    except ValueError as exc:
        raise fail(f"--older-than: {exc}") from exc
    root = repo_root(repo.resolve())
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
