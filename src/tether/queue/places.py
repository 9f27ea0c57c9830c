"""Where a store's queue lives: DBOS's tables (beside the event log's SQLite file, or in the same
PostgreSQL database, schema dbos) and, beside a SQLite store, the workers' wake FIFOs."""

from __future__ import annotations

from pathlib import Path


def postgres_url(ledger_url: str) -> str:
    """The store's PostgreSQL URL as DBOS and psycopg take it (no SQLAlchemy driver name)."""
    return ledger_url.replace("postgresql+psycopg://", "postgresql://", 1)


def system_db_url(ledger_url: str) -> str:
    """DBOS's tables: beside the event log for SQLite, in the same database (schema dbos) for PostgreSQL."""
    if ledger_url.startswith("sqlite:///"):
        path = Path(ledger_url.removeprefix("sqlite:///"))
        return f"sqlite:///{path.with_name('queue.db')}"
    return postgres_url(ledger_url)


def wake_folder(ledger_url: str) -> Path | None:
    """The folder of the workers' FIFOs beside a SQLite store; None for PostgreSQL (LISTEN/NOTIFY)."""
    if not ledger_url.startswith("sqlite:///"):
        return None
    return Path(ledger_url.removeprefix("sqlite:///")).with_name("queue.wake")
