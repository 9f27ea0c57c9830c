"""The event store: create runs, append events transactionally, read and verify them."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, create_engine, event, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from tether.errors import TetherError
from tether.ledger import events as ev
from tether.ledger import migrate
from tether.ledger.chain import (
    GENESIS,
    StoredEvent,
    Verification,
    canonical_json,
    event_hash,
    verify_chain,
)
from tether.ledger.schema import events, runs
from tether.paths import tether_dir
from tether.redact import mask, mask_payload, secret_values

DB_ENV = "TETHER_DB"
GATE_SOURCE = "gate"  # a (repository, configuration)'s log of tier decisions, not a run
CANARY_SOURCE = "canary"  # a canary's log of its start and decisions, not a run
ACCESS_SOURCE = "access"  # the store's log of who was given access (tokens) and who took it away
MEMORY_SOURCE = "memory"  # the store's log of people's decisions on memory entries
FLEET_SOURCE = "fleet"  # the store's log of kill switches set and released
OUTCOMES_SOURCE = "outcomes"  # a repository's log of outcome refreshes (the history and the forge asked)
NOT_RUNS = (GATE_SOURCE, CANARY_SOURCE, ACCESS_SOURCE, MEMORY_SOURCE, FLEET_SOURCE, OUTCOMES_SOURCE)


class LedgerError(TetherError):
    pass


class UnknownRun(LedgerError):
    pass


class ConcurrentAppend(LedgerError):
    """Another writer appended to the same run; this writer's view of the chain is stale."""


@dataclass(frozen=True)
class RunRow:
    id: str
    created_at: float
    updated_at: float
    source: str
    status: str
    repo: str
    instruction: str
    branch: str | None
    base_commit: str | None
    model: str | None
    architecture: str | None
    event_count: int
    head_hash: str
    summary: dict[str, Any] | None
    owner: str | None = None
    heartbeat_at: float | None = None
    parent_run_id: str | None = None


RUN_FILTERS = ("status", "repo", "model", "architecture", "source")  # indexed with created_at (migration 0007)


@dataclass(frozen=True)
class RunFilter:
    """Which runs a listing shows (None: any)."""

    status: str | None = None
    repo: str | None = None
    model: str | None = None
    architecture: str | None = None
    source: str | None = None
    since: float | None = None
    until: float | None = None


def new_run_id() -> str:
    """A time-ordered run id: when it started, then a random part."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def default_db_url(repo: Path) -> str:
    return f"sqlite:///{tether_dir(repo) / 'tether.db'}"


def _prepare_sqlite_dir(url: str) -> None:
    path = url.removeprefix("sqlite:///")
    if url.startswith("sqlite:///") and path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def _read_only_sqlite(url: str) -> str | None:
    """For a SQLite file this process cannot write (a read-only mount, another user's store): the
    URL that opens it for reading only (immutable when its folder cannot hold SQLite's lock files)."""
    path = url.removeprefix("sqlite:///")
    if not url.startswith("sqlite:///") or path in ("", ":memory:") or not os.path.isfile(path):
        return None
    if os.access(path, os.W_OK) and os.access(os.path.dirname(path) or ".", os.W_OK):
        return None
    immutable = "&immutable=1" if not os.access(os.path.dirname(path) or ".", os.W_OK) else ""
    return f"sqlite:///file:{path}?mode=ro{immutable}&uri=true"


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        read_only = _read_only_sqlite(url)
        if read_only is not None:
            return create_engine(read_only, connect_args={"timeout": 30})
        _prepare_sqlite_dir(url)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's BEGIN drive transactions; WAL keeps readers off the writer's back.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True)


def _row_to_run(row: Any) -> RunRow:
    data = dict(row._mapping)
    data["summary"] = json.loads(data["summary"]) if data["summary"] else None
    return RunRow(**data)


class Ledger:
    """One store (SQLite file or PostgreSQL database) holding many runs."""

    def __init__(self, url: str):
        self.url = url
        self.read_only = _read_only_sqlite(url) is not None
        try:
            self.engine = _make_engine(url)
            if self.read_only:
                migrate.require_current(self.engine, url)
            else:
                migrate.upgrade(self.engine)
        except OperationalError as exc:
            raise LedgerError(f"cannot open the store at {url}: {exc.orig}") from exc
        # run_id -> (event_count, head_hash) for runs this process appends to
        self._heads: dict[str, tuple[int, str]] = {}
        # Secret values in this process's environment: masked, like detected secrets, in every event.
        self._secrets = secret_values()
        # Built once: appends are the hot path, and statement construction costs more than SQLite.
        self._insert_event = insert(events)
        self._move_head = (
            update(runs)
            .where(runs.c.id == bindparam("rid"), runs.c.event_count == bindparam("expected"))
            .values(event_count=bindparam("seq"), head_hash=bindparam("hash"))
        )

    def close(self) -> None:
        self.engine.dispose()

    # runs -----------------------------------------------------------------------------------

    def writable(self) -> None:
        """Refuse to write a store opened for reading only, saying so (not SQLite's own words)."""
        if self.read_only:
            raise LedgerError(f"the store at {self.url} is read-only here: runs can be listed, shown and "
                              "verified, not started or changed")

    def create_run(self, run_id: str, *, repo: str, instruction: str, source: str = "live",
                   status: str = "running", **fields: Any) -> None:
        self.writable()
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(insert(runs).values(
                id=run_id, created_at=now, updated_at=now, source=source, status=status,
                repo=repo, instruction=mask(instruction, self._secrets), event_count=0, head_hash=GENESIS,
                **fields,
            ))
        self._heads[run_id] = (0, GENESIS)

    def update_run(self, run_id: str, *, summary: dict[str, Any] | None = None, **fields: Any) -> None:
        self.writable()
        values: dict[str, Any] = {"updated_at": time.time(), **fields}
        if summary is not None:
            values["summary"] = canonical_json(summary)
        with self.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == run_id).values(**values))

    def claim_run(self, run_id: str, from_status: str, to_status: str, owner: str | None = None,
                  from_owner: str | None = None) -> bool:
        """Move a run between states (and holders) only if nobody else moved it first."""
        now = time.time()
        with self.engine.begin() as conn:
            result = conn.execute(
                update(runs).where(runs.c.id == run_id, runs.c.status == from_status,
                                   runs.c.owner.is_(None) if from_owner is None else runs.c.owner == from_owner)
                .values(status=to_status, updated_at=now, owner=owner, heartbeat_at=now)
            )
        return result.rowcount == 1

    def heartbeat(self, run_id: str, owner: str) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(update(runs).where(runs.c.id == run_id, runs.c.owner == owner)
                                  .values(heartbeat_at=time.time()))
        return result.rowcount == 1

    def get_run(self, ref: str) -> RunRow:
        """A run by its id, or a unique prefix or suffix of it (the random end of an id is what
        people copy: `tether show 36ba1d`)."""
        with self.engine.connect() as conn:
            exact_row = conn.execute(select(runs).where(runs.c.id == ref)).first()  # by the key: no scan
            if exact_row is not None:
                return _row_to_run(exact_row)
            rows = conn.execute(select(runs).where(runs.c.id.startswith(ref, autoescape=True)).limit(2)).all()
            if not rows and ref:
                rows = conn.execute(select(runs).where(runs.c.id.endswith(ref, autoescape=True)).limit(3)).all()
        exact = [row for row in rows if row.id == ref]
        if exact:
            return _row_to_run(exact[0])
        if not rows:
            raise UnknownRun(f"no run {ref!r} in {self.url}")
        if len(rows) > 1:
            raise UnknownRun(f"run {ref!r} is ambiguous ({', '.join(row.id for row in rows[:3])}, ...); "
                             "give more characters")
        return _row_to_run(rows[0])

    def list_runs(self, limit: int | None = 50, repo: str | None = None, since: float | None = None,
                  sources: list[str] | None = None) -> list[RunRow]:
        """Runs, newest first; the gate's and canaries' logs (see gate/) only when `sources` names them."""
        query = select(runs).order_by(runs.c.created_at.desc()).limit(limit)
        query = query.where(runs.c.source.in_(sources) if sources is not None else runs.c.source.not_in(NOT_RUNS))
        if since is not None:
            query = query.where(runs.c.created_at >= since)
        if repo is not None:
            query = query.where(runs.c.repo == repo)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [_row_to_run(row) for row in rows]

    def runs_page(self, where: RunFilter, before: tuple[float, str] | None = None, limit: int = 50) -> list[RunRow]:
        """One page of runs, newest first, after the page that ended at `before` (its last run's
        created_at and id): keyset paging, as fast on the thousandth page as on the first."""
        query = select(runs).where(runs.c.source.not_in(NOT_RUNS))
        for column, value in (("status", where.status), ("repo", where.repo), ("model", where.model),
                              ("architecture", where.architecture), ("source", where.source)):
            if value:
                query = query.where(runs.c[column] == value)
        if where.since is not None:
            query = query.where(runs.c.created_at >= where.since)
        if where.until is not None:
            query = query.where(runs.c.created_at < where.until)
        if before is not None:  # the range on created_at alone uses its index; the OR only refines it
            at, run_id = before
            query = query.where(runs.c.created_at <= at, or_(runs.c.created_at < at, runs.c.id < run_id))
        query = query.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_row_to_run(row) for row in conn.execute(query).all()]

    def count_by_repo(self, status: str) -> list[tuple[str, int]]:
        """(repository, how many of its runs have `status`), most first."""
        query = (select(runs.c.repo, func.count()).where(runs.c.status == status, runs.c.source.not_in(NOT_RUNS))
                 .group_by(runs.c.repo).order_by(func.count().desc()))
        with self.engine.connect() as conn:
            return [(row[0], int(row[1])) for row in conn.execute(query).all()]

    def distinct(self, column: str, limit: int = 200) -> list[str]:
        """The values a runs column takes (a filter's choices): a walk along the column's index,
        one lookup per value, so as fast with a million runs as with ten."""
        if column not in RUN_FILTERS:
            raise ValueError(f"not a runs filter: {column!r}")
        # the column is one of RUN_FILTERS, never a caller's text
        walk = text(f"WITH RECURSIVE walk(value) AS (SELECT MIN({column}) FROM runs UNION ALL "
                    f"SELECT (SELECT MIN({column}) FROM runs WHERE {column} > walk.value) FROM walk "
                    f"WHERE walk.value IS NOT NULL) SELECT value FROM walk WHERE value IS NOT NULL LIMIT :limit")
        with self.engine.connect() as conn:
            values = [row[0] for row in conn.execute(walk, {"limit": limit + len(NOT_RUNS) + 1}).all()]
        # the store's own logs (gate, canary, access, ...) are rows too: their marks are no run's
        return [value for value in values if value and value not in NOT_RUNS][:limit]

    # events ---------------------------------------------------------------------------------

    def _head(self, run_id: str) -> tuple[int, str]:
        if run_id not in self._heads:
            with self.engine.connect() as conn:
                row = conn.execute(
                    select(runs.c.event_count, runs.c.head_hash).where(runs.c.id == run_id)
                ).first()
            if row is None:
                raise UnknownRun(f"no run {run_id!r} in {self.url}")
            self._heads[run_id] = (row.event_count, row.head_hash)
        return self._heads[run_id]

    def record(self, run_id: str, payload: ev.Payload, *, after: int | None = None) -> StoredEvent:
        """Append one typed event (see ledger/events.py): how every writer of a run's log appends.
        With `after`, only if the log still holds exactly that many events: a decision taken on what
        was read is not recorded once someone else has recorded theirs (raises ConcurrentAppend)."""
        if after is not None:
            self._heads.pop(run_id, None)
            if self._head(run_id)[0] != after:
                raise ConcurrentAppend(f"run {run_id} was appended to by another writer")
        return self.append(run_id, payload.type, payload.as_json())

    def record_in_log(self, log_id: str, what: str, payload: ev.Payload) -> StoredEvent:
        """Append to one of the store's own logs (not a run: its id is its source), made on first use."""
        if not self.has_run(log_id):
            with contextlib.suppress(IntegrityError):  # another process made it first
                self.create_run(log_id, repo="", instruction=what, source=log_id, status=log_id)
        return self.record(log_id, payload)

    def record_many(self, run_id: str, batch: list[tuple[ev.Payload, float]]) -> int:
        """Append a whole recorded history of typed events (an import) in one transaction."""
        return self.append_many(run_id, [(payload.type, payload.as_json(), ts) for payload, ts in batch])

    def append(self, run_id: str, type_: str, payload: dict[str, Any]) -> StoredEvent:
        """Append one event in one transaction: the event row and the run's head move together,
        and the head update is conditional, so a second writer can never fork the chain."""
        return self._commit(run_id, [(type_, payload, time.time())])[0]

    def append_many(self, run_id: str, batch: list[tuple[str, dict[str, Any], float]]) -> int:
        """Append a whole recorded history (an import) in one transaction: all of it or none."""
        return len(self._commit(run_id, batch))

    def _commit(self, run_id: str, batch: list[tuple[str, dict[str, Any], float]]) -> list[StoredEvent]:
        self.writable()
        expected, prev = self._head(run_id)
        stored: list[StoredEvent] = []
        for offset, (type_, payload, when) in enumerate(batch, start=1):
            ts = float(when)  # the column is a float; an int would hash differently once read back
            payload_json = canonical_json(mask_payload(payload, self._secrets))
            digest = event_hash(prev, run_id, expected + offset, ts, type_, payload_json)
            stored.append(StoredEvent(run_id, expected + offset, ts, type_, payload_json, prev, digest))
            prev = digest
        seq = expected + len(stored)
        try:
            with self.engine.begin() as conn:
                rows = [{"run_id": run_id, "seq": e.seq, "ts": e.ts, "type": e.type, "payload": e.payload_json,
                         "prev_hash": e.prev_hash, "hash": e.hash} for e in stored]
                if rows:  # one row executes faster than a one-row executemany
                    conn.execute(self._insert_event, rows[0] if len(rows) == 1 else rows)
                moved = conn.execute(
                    self._move_head, {"rid": run_id, "expected": expected, "seq": seq, "hash": prev}
                ).rowcount
                if moved != 1:
                    raise ConcurrentAppend(f"run {run_id} was appended to by another writer")
        except (IntegrityError, ConcurrentAppend) as exc:
            self._heads.pop(run_id, None)
            raise ConcurrentAppend(f"run {run_id} was appended to by another writer") from exc
        self._heads[run_id] = (seq, prev)
        return stored

    def has_run(self, run_id: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(runs.c.id).where(runs.c.id == run_id)).first() is not None

    def events(self, run_id: str, after_seq: int = 0) -> list[StoredEvent]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(events.c.run_id, events.c.seq, events.c.ts, events.c.type, events.c.payload,
                       events.c.prev_hash, events.c.hash)
                .where(events.c.run_id == run_id, events.c.seq > after_seq)
                .order_by(events.c.seq, events.c.id)
            ).all()
        return [StoredEvent(*row) for row in rows]

    def events_of(self, run_ids: list[str], types: list[str]) -> dict[str, list[StoredEvent]]:
        """The events of these types of many runs at once, by run, each run's in order."""
        found: dict[str, list[StoredEvent]] = {run_id: [] for run_id in run_ids}
        with self.engine.connect() as conn:
            for start in range(0, len(run_ids), 500):  # SQLite binds at most 32766 parameters
                rows = conn.execute(
                    select(events.c.run_id, events.c.seq, events.c.ts, events.c.type, events.c.payload,
                           events.c.prev_hash, events.c.hash)
                    .where(events.c.run_id.in_(run_ids[start:start + 500]), events.c.type.in_(types))
                    .order_by(events.c.run_id, events.c.seq)
                ).all()
                for row in rows:
                    found[row.run_id].append(StoredEvent(*row))
        return found

    def verify(self, run_id: str) -> Verification:
        run = self.get_run(run_id)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(events.c.run_id, events.c.seq, events.c.ts, events.c.type, events.c.payload,
                       events.c.prev_hash, events.c.hash)
                .where(events.c.run_id == run.id).order_by(events.c.id)
            ).all()
        return verify_chain((StoredEvent(*row) for row in rows), run.event_count, run.head_hash)

