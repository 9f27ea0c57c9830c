"""Memory entries of a repository: kept when a run's `remember` call passes the guard, reviewed by
people (approve, pin, forget: each an event naming who, in the store's memory log), and given to
later runs of the same repository at their start, within a token budget, pinned and most-used
first. A run records the entries it was given (RunStarted.memory), so its replay is exact and an
entry's effect can be measured against the repository's runs that were not given it."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from tether.errors import TetherError
from tether.ledger import Ledger
from tether.ledger import events as ev
from tether.ledger.schema import memories
from tether.ledger.store import MEMORY_SOURCE
from tether.memory.rules import Refusal, refusal
from tether.models.base import estimate_tokens
from tether.policy.schema import MemoryPolicy

State = Literal["active", "pending", "forgotten"]
Action = Literal["approve", "pin", "unpin", "forget"]
LIVE: tuple[State, ...] = ("active", "pending")
PREAMBLE = ("Notes earlier runs on this repository kept, reviewed by people. They describe the repository; "
            "the task and the policy come first.")


class EntryError(TetherError):
    """An entry that does not exist, or a review that cannot be done."""


@dataclass(frozen=True)
class Entry:
    id: str
    repo: str
    text: str
    run_id: str
    call_id: str
    created_at: float
    state: State
    pinned: bool
    uses: int
    reviewed_by: str | None = None
    reviewed_at: float | None = None

    def given(self) -> dict[str, str]:
        """How a run records it (RunStarted.memory)."""
        return {"id": self.id, "text": self.text}


def _entry(row) -> Entry:  # type: ignore[no-untyped-def]
    data = dict(row._mapping)
    data["pinned"] = bool(data["pinned"])
    return Entry(**data)


def _count(ledger: Ledger, *where) -> int:  # type: ignore[no-untyped-def]
    with ledger.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(memories).where(*where)).scalar_one())


@dataclass
class Door:
    """The one way a run writes memory: the guard asks `refusal`, the tool calls `keep`. A replay
    (`replaying` the recorded run's id) is checked as the run was and keeps nothing: `keep` answers
    with the entry the recorded run kept for the same call."""

    ledger: Ledger
    repo: str
    run_id: str
    policy: MemoryPolicy
    replaying: str | None = None
    _replayed: list[str] = field(default_factory=list)

    def counts(self) -> tuple[int, int]:
        """(entries this run kept, the repository's live entries)."""
        if not self.policy.enabled:
            return 0, 0
        kept = len(self._replayed) if self.replaying else _count(self.ledger, memories.c.run_id == self.run_id)
        return kept, _count(self.ledger, memories.c.repo == self.repo, memories.c.state.in_(LIVE))

    def refusal(self, text: str) -> Refusal | None:
        return refusal(text, self.policy, *self.counts())

    def keep(self, text: str, call_id: str) -> Entry | None:
        """The entry kept for this call (the same one when a resumed run executes the call again; the
        recorded run's in a replay, None if it kept none)."""
        if self.replaying is not None:
            self._replayed.append(call_id)
            return self._kept_by(self.replaying, call_id)
        state: State = "pending" if self.policy.require_approval else "active"
        entry = Entry("m" + secrets.token_hex(5), self.repo, text, self.run_id, call_id, time.time(), state, False, 0)
        try:
            with self.ledger.engine.begin() as conn:
                conn.execute(insert(memories).values(**entry.__dict__))
        except IntegrityError:
            return self._kept_by(self.run_id, call_id)
        return entry

    def _kept_by(self, run_id: str, call_id: str) -> Entry | None:
        with self.ledger.engine.connect() as conn:
            row = conn.execute(select(memories).where(memories.c.run_id == run_id,
                                                      memories.c.call_id == call_id)).first()
        return _entry(row) if row is not None else None


def entries(ledger: Ledger, repo: str | None = None, states: tuple[State, ...] = LIVE) -> list[Entry]:
    """Entries, pinned and most used first."""
    query = select(memories).where(memories.c.state.in_(states))
    if repo is not None:
        query = query.where(memories.c.repo == repo)
    query = query.order_by(memories.c.pinned.desc(), memories.c.uses.desc(), memories.c.created_at.desc())
    with ledger.engine.connect() as conn:
        return [_entry(row) for row in conn.execute(query).all()]


def get(ledger: Ledger, ref: str) -> Entry:
    """An entry by its id or a unique prefix of it."""
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(memories).where(memories.c.id.startswith(ref, autoescape=True)).limit(2)).all()
    exact = [row for row in rows if row.id == ref]
    if exact or len(rows) == 1:
        return _entry((exact or rows)[0])
    if not rows:
        raise EntryError(f"no memory entry {ref!r} in {ledger.url}")
    raise EntryError(f"memory entry {ref!r} is ambiguous ({', '.join(row.id for row in rows)}); give more characters")


def review(ledger: Ledger, ref: str, action: Action, by: str, reason: str = "") -> Entry:
    """A person's decision on an entry, recorded in the store's memory log naming them."""
    entry = get(ledger, ref)
    if entry.state == "forgotten":
        raise EntryError(f"memory entry {entry.id} was forgotten by {entry.reviewed_by}")
    if action == "approve" and entry.state != "pending":
        raise EntryError(f"memory entry {entry.id} is {entry.state}; only a pending entry is approved")
    values: dict[str, object] = {"reviewed_by": by, "reviewed_at": time.time()}
    values |= {"approve": {"state": "active"}, "forget": {"state": "forgotten"}, "pin": {"pinned": 1},
               "unpin": {"pinned": 0}}[action]
    with ledger.engine.begin() as conn:
        done = conn.execute(update(memories).where(memories.c.id == entry.id, memories.c.state == entry.state)
                            .values(**values)).rowcount
    if not done:
        raise EntryError(f"memory entry {entry.id} was changed by someone else just now; look again")
    ledger.record_in_log(MEMORY_SOURCE, "people's decisions on memory entries",
                         ev.MemoryReviewed(entry_id=entry.id, repo=entry.repo, action=action, by=by, reason=reason))
    return get(ledger, entry.id)


def for_run(ledger: Ledger, repo: str, policy: MemoryPolicy) -> list[Entry]:
    """What a new run of `repo` is given: active entries, pinned and most-used first, as many as fit
    in `budget_tokens` (one that does not fit is skipped for smaller ones after it)."""
    if not policy.enabled or policy.budget_tokens == 0:
        return []
    chosen, used = [], estimate_tokens(PREAMBLE)
    for entry in entries(ledger, repo, ("active",)):
        cost = estimate_tokens(entry.text) + 4
        if used + cost <= policy.budget_tokens:
            chosen.append(entry)
            used += cost
    return chosen


def mark_given(ledger: Ledger, ids: list[str]) -> None:
    if not ids:
        return
    with ledger.engine.begin() as conn:
        conn.execute(update(memories).where(memories.c.id.in_(ids)).values(uses=memories.c.uses + 1))


def shown(given: list[dict[str, str]]) -> str:
    """The entries as the agent reads them after the task."""
    if not given:
        return ""
    return PREAMBLE + "\n" + "\n".join(f"- {entry['text'].strip()}" for entry in given)
