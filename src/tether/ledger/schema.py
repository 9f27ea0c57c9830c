"""Tables of the store. Migrations in ledger/migrations create them; this module only names them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# A projection of each run for listing; the events are the record.
runs = Table(
    "runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("source", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("repo", Text, nullable=False),
    Column("instruction", Text, nullable=False),
    Column("branch", Text),
    Column("base_commit", String(64)),
    Column("model", Text),
    Column("architecture", String(32)),
    Column("event_count", Integer, nullable=False),
    Column("head_hash", String(64), nullable=False),
    Column("summary", Text),
    Column("owner", String(200)),  # "host:pid:token" of the process running it, None when idle
    Column("heartbeat_at", Float),
    Column("parent_run_id", String(64)),  # the run a replay replays
)

events = Table(
    "events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("run_id", String(64), ForeignKey("runs.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("ts", Float, nullable=False),
    Column("type", String(40), nullable=False),
    Column("payload", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("run_id", "seq", name="uq_events_run_seq"),
)
