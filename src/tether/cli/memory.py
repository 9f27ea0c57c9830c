"""Commands for a repository's memory: what agents kept, for people to review."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from tether.cli.common import DbOpt, JsonOpt, RepoOpt, app, err, fail, open_ledger, out
from tether.memory import store
from tether.memory.effect import effect
from tether.people import acting
from tether.render.text import table_of
from tether.workspace.git import repo_root

memory_app = typer.Typer(help="What agents learned about a repository, kept across its runs ([memory] in the policy). "
                              "Example: tether memory list", no_args_is_help=True)
app.add_typer(memory_app, name="memory")

ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (recorded with your name).")]


def _repo_name(repo: Path) -> str:
    """The repository as runs started in it know it (a queued task's by its URL: give --all)."""
    return str(repo_root(repo.resolve()))


def _entry_json(entry: store.Entry) -> dict[str, object]:
    return dict(entry.__dict__)


@memory_app.command("list")
def listing(repo: RepoOpt = Path("."), every: Annotated[bool, typer.Option(
                "--all", help="Every repository's entries, not only this one's.")] = False,
            forgotten: Annotated[bool, typer.Option("--forgotten", help="Include forgotten entries.")] = False,
            db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """The repository's entries, pinned and most used first (the order runs are given them).

    Example: tether memory list --json
    """
    states: tuple[store.State, ...] = (*store.LIVE, "forgotten") if forgotten else store.LIVE
    with open_ledger(db, repo) as ledger:
        found = store.entries(ledger, None if every else _repo_name(repo), states)
    if as_json:
        out.print_json(json.dumps([_entry_json(entry) for entry in found]))
        return
    if not found:
        err.print("no memory entries" + ("" if every else f" for {_repo_name(repo)}") +
                  " (a run keeps one when [memory] enabled = true and its agent calls remember)")
        return
    rows = [[entry.id, entry.state + (" pinned" if entry.pinned else ""), str(entry.uses), entry.run_id,
             time.strftime("%Y-%m-%d", time.gmtime(entry.created_at)), entry.text[:80]] for entry in found]
    out.print(table_of(["id", "state", "given", "kept by run", "kept", "text"], rows, ("id", "text")))


@memory_app.command("show")
def show(entry_id: str, repo: RepoOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """One entry in full: the run and step that kept it, who reviewed it, and its effect (the
    repository's runs given it against those not).

    Example: tether memory show m3f9a1c
    """
    with open_ledger(db, repo) as ledger:
        entry = store.get(ledger, entry_id)
        measured = effect(ledger, entry)
    if as_json:
        out.print_json(json.dumps(_entry_json(entry) | {"effect": measured.as_dict()}))
        return
    out.print(f"[bold]{entry.id}[/] {entry.state}{' pinned' if entry.pinned else ''}, given to {entry.uses} run(s)")
    out.print(entry.text, highlight=False, markup=False)
    out.print(f"kept by run {entry.run_id} at call {entry.call_id} "
              f"({time.strftime('%Y-%m-%d %H:%M', time.gmtime(entry.created_at))} UTC); repository {entry.repo}")
    if entry.reviewed_by:
        out.print(f"last reviewed by {entry.reviewed_by}")
    for label, group in (("given it", measured.given), ("not given it", measured.not_given)):
        if not group.runs:
            out.print(f"runs {label}: none yet")
            continue
        low, high = group.interval or (0.0, 0.0)
        out.print(f"runs {label}: {group.runs}, {group.succeeded} succeeded (95% {low:.0%}–{high:.0%}), "
                  f"mean {group.mean_steps} steps, {group.mean_tokens} tokens")


def _review(action: store.Action, entry_id: str, reason: str, repo: Path, db: str | None) -> None:
    with open_ledger(db, repo) as ledger:
        actor = acting(ledger)
        if not actor.may_decide:
            raise fail(f"{actor.describe()} may look, not decide: memory is reviewed by an approver or an admin")
        try:
            entry = store.review(ledger, entry_id, action, actor.name, reason)
        except store.EntryError as exc:
            raise fail(str(exc)) from exc
    err.print(f"{entry.id}: {action} by {actor.name} ({entry.state}{', pinned' if entry.pinned else ''})")


@memory_app.command("forget")
def forget(entry_id: str, reason: ReasonOpt = "", repo: RepoOpt = Path("."), db: DbOpt = None) -> None:
    """Never give the entry to a run again (it stays in the record).

    Example: tether memory forget m3f9a1c --reason "the tests moved to nox"
    """
    _review("forget", entry_id, reason, repo, db)


@memory_app.command("pin")
def pin(entry_id: str, reason: ReasonOpt = "", repo: RepoOpt = Path("."), db: DbOpt = None) -> None:
    """Give the entry to every run first, before the most used ones.

    Example: tether memory pin m3f9a1c
    """
    _review("pin", entry_id, reason, repo, db)


@memory_app.command("unpin")
def unpin(entry_id: str, reason: ReasonOpt = "", repo: RepoOpt = Path("."), db: DbOpt = None) -> None:
    """Take the pin off an entry.

    Example: tether memory unpin m3f9a1c
    """
    _review("unpin", entry_id, reason, repo, db)


@memory_app.command("approve")
def approve(entry_id: str, reason: ReasonOpt = "", repo: RepoOpt = Path("."), db: DbOpt = None) -> None:
    """Let a pending entry be given to runs ([memory] require_approval = true).

    Example: tether memory approve m3f9a1c
    """
    _review("approve", entry_id, reason, repo, db)
