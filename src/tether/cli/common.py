"""What every command group shares: the app, the consoles, options, the store, how a run ends on screen."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.prompt import Confirm, Prompt

from tether.agents.session import Approver
from tether.ledger import DB_ENV, Ledger, default_db_url
from tether.ledger.fleet import Fleet
from tether.ledger.queries import run_policy
from tether.people import os_user
from tether.policy import Policy, find_policy
from tether.queue.tasks import Tasks
from tether.render.runs import print_approval_request, print_summary
from tether.render.text import show_diff
from tether.workspace.git import GitError, repo_root
from tether.workspace.mirror import check_url

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True, soft_wrap=True)

EXIT_CODES = {"succeeded": 0, "failed": 1, "stopped": 3, "awaiting_approval": 4, "waiting": 5}


def _version(value: bool) -> None:
    if value:
        out.print(f"tether {metadata.version('tether')}")
        raise typer.Exit(0)


STARTER = Path(__file__).parents[1] / "policy" / "starter.toml"

RepoOpt = Annotated[Path, typer.Option("--repo", help="The git repository (default: the current one).")]
DbOpt = Annotated[str | None, typer.Option("--db", help=f"SQLAlchemy URL of the store (or ${DB_ENV}).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
ByOpt = Annotated[str | None, typer.Option("--by", help="Who (default: this user).")]


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def db_url_of(db: str | None, repo: Path) -> str:
    if db or os.environ.get(DB_ENV):
        return db or os.environ[DB_ENV]
    try:
        return default_db_url(repo_root(repo.resolve()))
    except GitError as exc:
        raise fail(f"{exc}; pass --db or set {DB_ENV} to name the store") from exc


@contextmanager
def open_ledger(db: str | None, repo: Path) -> Iterator[Ledger]:
    ledger = Ledger(db_url_of(db, repo))
    try:
        yield ledger
    finally:
        ledger.close()


def terminal_approver() -> Approver | None:
    if not sys.stdin.isatty():
        return None

    def ask(request: dict[str, Any]) -> tuple[bool, str, str]:
        err.print(f"\n[bold cyan]Approval needed[/] from {', '.join(request['owners'])}: {request['action']}")
        err.print(f"  {request['reason']}")
        show_diff(err, request.get("diff", ""))
        err.print(f"  only an owner may approve; you are {os_user()}; anyone may deny")
        approved = Confirm.ask("  Approve?", console=err, default=False)
        reason = Prompt.ask("  Reason", console=err, default="")
        return approved, os_user(), reason

    return ask


def budget_of(ledger: Ledger, run_id: str) -> dict[str, Any] | None:
    policy = run_policy(ledger.events(run_id))
    return policy.budget.model_dump() if policy is not None else None


def finish_run(summary: dict[str, Any], as_json: bool, budget: dict[str, Any] | None) -> None:
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




UrlOpt = Annotated[str | None, typer.Option("--url", help="The repository by the git URL its tasks named "
                                            "(instead of --repo's path).")]


def repository_name(repo: Path, url: str | None) -> str:
    """What the store knows a repository by: the URL its tasks named, else its root's path."""
    return check_url(url) if url is not None else str(repo_root(repo.resolve()))


def checked_root(repo: Path, policy: Path | None) -> Path:
    """The repository's root, with its policy parsed: a broken policy is refused before the store
    is even created."""
    root = repo_root(repo.resolve())
    find_policy(root, policy)
    return root


def layered_policy(root: Path, policy: Path | None, ledger: Ledger) -> tuple[Policy, Path | None]:
    """The repository's policy over the store's org policy."""
    return find_policy(root, policy, Fleet(ledger).org_policy())




def pull_with_progress(model: Any) -> Path:
    from tether.models.catalog import pull

    with Progress(console=err) as progress:
        task = progress.add_task(f"fetching and joining {model.name}", total=model.size)
        return pull(model, on_bytes=lambda n: progress.advance(task, n))




def ensure_local_model(spec: str) -> None:
    """A known local model that is missing is fetched (and verified) before a demo uses it."""
    from tether.models.catalog import KNOWN, status

    scheme, _, name = spec.partition(":")
    if scheme == "local" and name in KNOWN and status(KNOWN[name]) != "verified":
        err.print(f"{name} is not here yet: fetching it once ({KNOWN[name].size / 1e6:,.0f} MB)")
        pull_with_progress(KNOWN[name])




@contextmanager
def open_tasks(db: str | None, repo: Path) -> Iterator[tuple[Ledger, Tasks]]:
    with open_ledger(db, repo) as ledger:
        tasks = Tasks(ledger)
        try:
            yield ledger, tasks
        finally:
            tasks.close()
