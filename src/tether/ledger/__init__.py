"""The event log: schema, transactional append, hash-chain verification, migrations."""

from tether.ledger.chain import GENESIS, StoredEvent, Verification, canonical_json
from tether.ledger.store import (
    DB_ENV,
    ConcurrentAppend,
    Ledger,
    LedgerError,
    RunRow,
    UnknownRun,
    default_db_url,
)

__all__ = [
    "DB_ENV",
    "GENESIS",
    "ConcurrentAppend",
    "Ledger",
    "LedgerError",
    "RunRow",
    "StoredEvent",
    "UnknownRun",
    "Verification",
    "canonical_json",
    "default_db_url",
]
