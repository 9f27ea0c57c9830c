"""Fleet-wide rows shared by every worker on every machine: the kill switch, daily spend, repository
slots and the org policy. Every check-and-spend is one transaction holding a row lock (PostgreSQL
SELECT ... FOR UPDATE; SQLite's BEGIN IMMEDIATE locks the whole file), so two workers cannot both
spend the last dollar."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tether.ledger import events as ev
from tether.ledger.schema import fleet_usage, repo_slots, runs, settings, switches
from tether.ledger.store import FLEET_SOURCE, Ledger

ORG_POLICY = "org_policy"
FLEET_LOG = FLEET_SOURCE  # the hash-chained log of kill switches set and released (tether verify fleet)
FLEET_LOG_WHAT = "kill switches set and released"


def today(now: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if now is None else now, UTC).strftime("%Y-%m-%d")


def next_day_at(now: float | None = None) -> float:
    """The epoch second the next UTC day starts."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.timestamp() + 86400


def switch_scopes(repo: str, task_id: str) -> list[str]:
    """The switch rows that stop a run: everything, its repository, or the task itself."""
    return ["all", f"repo:{repo}", f"task:{task_id}"]


@dataclass(frozen=True)
class Switch:
    scope: str
    reason: str
    by: str
    created_at: float


@dataclass(frozen=True)
class DayUsage:
    day: str
    scope: str
    usd: float
    lines: int


class Fleet:
    """The fleet rows of one store."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.engine = ledger.engine
        self.postgres = self.engine.dialect.name == "postgresql"
        self._insert = (postgresql if self.postgres else sqlite).insert  # with ON CONFLICT

    def _lock(self, conn: Connection, day: str, scope: str) -> DayUsage:
        """Create the usage row if needed and lock it until the transaction ends."""
        conn.execute(self._insert(fleet_usage).values(day=day, scope=scope, usd=0.0, lines=0)
                     .on_conflict_do_nothing())
        query = select(fleet_usage).where(fleet_usage.c.day == day, fleet_usage.c.scope == scope)
        row = conn.execute(query.with_for_update() if self.postgres else query).one()
        return DayUsage(row.day, row.scope, row.usd, row.lines)

    # kill switch -----------------------------------------------------------------------------

    def set_switch(self, scope: str, reason: str, by: str) -> None:
        """Brake `scope`; recorded in the store's fleet log naming who."""
        statement = self._insert(switches).values(scope=scope, reason=reason, by=by, created_at=time.time())
        with self.engine.begin() as conn:
            conn.execute(statement.on_conflict_do_update(
                index_elements=["scope"], set_={"reason": reason, "by": by, "created_at": time.time()}))
        self.ledger.record_in_log(FLEET_LOG, FLEET_LOG_WHAT, ev.SwitchSet(scope=scope, reason=reason, by=by))

    def release_switch(self, scope: str, by: str) -> bool:
        with self.engine.begin() as conn:
            released = conn.execute(delete(switches).where(switches.c.scope == scope)).rowcount == 1
        if released:
            self.ledger.record_in_log(FLEET_LOG, FLEET_LOG_WHAT, ev.SwitchReleased(scope=scope, by=by))
        return released

    def switches(self) -> list[Switch]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(switches).order_by(switches.c.created_at)).all()
        return [Switch(*row) for row in rows]

    def active_switch(self, repo: str, task_id: str) -> Switch | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(switches).where(switches.c.scope.in_(switch_scopes(repo, task_id)))
                               .order_by(switches.c.created_at).limit(1)).first()
        return Switch(*row) if row else None

    # daily spend -----------------------------------------------------------------------------

    def reserve_usd(self, day: str, amount: float, limit: float) -> DayUsage | None:
        """Reserve a step's cost if the org has not reached its daily limit; None if it has. A step is
        admitted while spend is under the limit, so the fleet overshoots by at most one step."""
        with self.engine.begin() as conn:
            usage = self._lock(conn, day, "org")
            if usage.usd >= limit:
                return None
            conn.execute(update(fleet_usage).where(fleet_usage.c.day == day, fleet_usage.c.scope == "org")
                         .values(usd=fleet_usage.c.usd + amount))
        return DayUsage(day, "org", usage.usd + amount, usage.lines)

    def settle_usd(self, day: str, delta: float) -> None:
        """Replace a reservation by the step's real cost (delta = real - reserved)."""
        if delta == 0:
            return
        with self.engine.begin() as conn:
            conn.execute(update(fleet_usage).where(fleet_usage.c.day == day, fleet_usage.c.scope == "org")
                         .values(usd=fleet_usage.c.usd + delta))

    def add_lines(self, day: str, repo: str, delta: int, limit: int | None) -> DayUsage | None:
        """Count changed lines against a repository's daily review capacity; None if they do not fit."""
        with self.engine.begin() as conn:
            usage = self._lock(conn, day, f"repo:{repo}")
            if limit is not None and delta > 0 and usage.lines + delta > limit:
                return None
            lines = max(0, usage.lines + delta)
            conn.execute(update(fleet_usage)
                         .where(fleet_usage.c.day == day, fleet_usage.c.scope == f"repo:{repo}")
                         .values(lines=lines))
        return DayUsage(day, f"repo:{repo}", usage.usd, lines)

    def usage(self, day: str) -> list[DayUsage]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(fleet_usage).where(fleet_usage.c.day == day,
                                                          ~fleet_usage.c.scope.startswith("lock:"))).all()
        return [DayUsage(*row) for row in rows]

    # repository slots ------------------------------------------------------------------------

    def acquire_slot(self, repo: str, task_id: str, owner: str, limit: int | None,
                     alive: Callable[[str, float | None], bool]) -> bool:
        """Take one of a repository's concurrent-run slots for a task (again, if it holds one).
        Slots of holders that died are freed first; alive(owner, heartbeat_at) decides."""
        with self.engine.begin() as conn:
            self._lock(conn, "-", f"lock:slots:{repo}")
            held = conn.execute(
                select(repo_slots.c.task_id, repo_slots.c.owner, runs.c.heartbeat_at)
                .select_from(repo_slots.outerjoin(runs, runs.c.id == repo_slots.c.task_id))
                .where(repo_slots.c.repo == repo)
            ).all()
            dead = [row.task_id for row in held if row.task_id != task_id and not alive(row.owner, row.heartbeat_at)]
            if dead:
                conn.execute(delete(repo_slots).where(repo_slots.c.task_id.in_(dead)))
            others = [row for row in held if row.task_id != task_id and row.task_id not in dead]
            if limit is not None and len(others) >= limit:
                return False
            conn.execute(delete(repo_slots).where(repo_slots.c.task_id == task_id))
            conn.execute(repo_slots.insert().values(task_id=task_id, repo=repo, owner=owner,
                                                    acquired_at=time.time()))
        return True

    def release_slot(self, task_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(repo_slots).where(repo_slots.c.task_id == task_id))

    def slots(self, repo: str) -> int:
        with self.engine.connect() as conn:
            query = select(func.count()).select_from(repo_slots).where(repo_slots.c.repo == repo)
            return conn.execute(query).scalar_one()

    # settings --------------------------------------------------------------------------------

    def set_setting(self, name: str, value: str) -> None:
        statement = self._insert(settings).values(name=name, value=value, updated_at=time.time())
        with self.engine.begin() as conn:
            conn.execute(statement.on_conflict_do_update(
                index_elements=["name"], set_={"value": value, "updated_at": time.time()}))

    def org_policy(self) -> str | None:
        """The org policy TOML every run of this store is layered on (tether fleet set)."""
        return self.setting(ORG_POLICY)

    def setting(self, name: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(settings.c.value).where(settings.c.name == name)).scalar_one_or_none()
