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

# Fleet-wide rows every worker on every machine reads: see ledger/fleet.py.

# The kill switch: a row per braked scope ("all", "repo:<path>", "task:<id>").
switches = Table(
    "switches",
    metadata,
    Column("scope", String(512), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("by", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
)

# Spend per UTC day: scope "org" counts USD, "repo:<path>" counts changed lines; "lock:..." rows
# exist only to be locked.
fleet_usage = Table(
    "fleet_usage",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("scope", String(512), primary_key=True),
    Column("usd", Float, nullable=False),
    Column("lines", Integer, nullable=False),
)

# Who runs what in a repository now, for the per-repository concurrency limit.
repo_slots = Table(
    "repo_slots",
    metadata,
    Column("task_id", String(64), primary_key=True),
    Column("repo", Text, nullable=False),
    Column("owner", String(200), nullable=False),
    Column("acquired_at", Float, nullable=False),
)

# Named settings shared by the fleet; "org_policy" holds the org-level policy TOML.
settings = Table(
    "settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Evals (see evals/): the spec of each eval, and per cell (task x config x repeat) its run and the
# score of the hidden and visible checks run on the delivered commit. Everything else about a cell
# is read from its run's events.
evals = Table(
    "evals",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("suite", Text, nullable=False),
    Column("spec", Text, nullable=False),
)

eval_cells = Table(
    "eval_cells",
    metadata,
    Column("eval_id", String(64), ForeignKey("evals.id"), primary_key=True),
    Column("task", String(200), primary_key=True),
    Column("config", String(200), primary_key=True),
    Column("repeat", Integer, primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("scored_at", Float),
    Column("score", Text),
)

# People's tokens (the web app, `TETHER_TOKEN` for the CLI): the name is the identity the owner check
# uses, the role what the holder may do. Only the sha256 of a token is kept.
tokens = Table(
    "tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(32), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("expires_at", Float),
    Column("revoked_at", Float),
    Column("revoked_by", String(200)),
)

# What agents learned about a repository (tether memory): written by a run's `remember` call through
# the guard (its run and call are the event that wrote it), reviewed by people, given to later runs.
# state: active (given to runs), pending (waits for a person's approval), forgotten (never given again).
memories = Table(
    "memories",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("repo", Text, nullable=False, index=True),
    Column("text", Text, nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("call_id", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("state", String(16), nullable=False),
    Column("pinned", Integer, nullable=False, default=0),
    Column("uses", Integer, nullable=False, default=0),
    Column("reviewed_by", String(200)),
    Column("reviewed_at", Float),
    UniqueConstraint("run_id", "call_id"),
)
