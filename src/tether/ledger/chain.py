"""The hash chain: canonical JSON, event hashes and verification. Pure functions, no I/O."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from tether.ledger.events import Payload, read_payload

GENESIS = "0" * 64


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def event_material(run_id: str, seq: int, ts: float, type_: str, payload_json: str) -> str:
    """The canonical JSON of {payload, run_id, seq, ts, type}, built around the already-canonical
    payload text so the payload is serialised once."""
    head = canonical_json({"run_id": run_id, "seq": seq, "ts": ts, "type": type_})
    return '{"payload":' + payload_json + "," + head[1:]


def event_hash(prev_hash: str, run_id: str, seq: int, ts: float, type_: str, payload_json: str) -> str:
    material = prev_hash + event_material(run_id, seq, ts, type_, payload_json)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StoredEvent:
    run_id: str
    seq: int
    ts: float
    type: str
    payload_json: str
    prev_hash: str
    hash: str

    @cached_property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.payload_json)

    @cached_property
    def data(self) -> Payload:
        """The payload as its typed model (see ledger/events.py)."""
        return read_payload(self.type, self.payload)


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    bad_seq: int | None = None
    problem: str | None = None


def verify_chain(
    stored: Iterable[StoredEvent], expected_count: int, expected_head: str
) -> Verification:
    """Check order, links and hashes; then that the chain ends where the run's head says it does,
    which catches a deleted tail."""
    prev = GENESIS
    checked = 0
    for position, event in enumerate(stored, start=1):
        if event.seq != position:
            return Verification(False, checked, event.seq,
                                f"expected seq {position}, found {event.seq} (event missing or inserted)")
        if event.prev_hash != prev:
            return Verification(False, checked, event.seq,
                                "prev_hash does not match the previous event's hash (reordered or replaced)")
        recomputed = event_hash(prev, event.run_id, event.seq, event.ts, event.type, event.payload_json)
        if recomputed != event.hash:
            return Verification(False, checked, event.seq, "hash does not match the event's content (edited)")
        prev = event.hash
        checked += 1
    if checked != expected_count or prev != expected_head:
        return Verification(False, checked, checked + 1,
                            f"run head records {expected_count} events ending in {expected_head[:12]}, "
                            f"chain has {checked} ending in {prev[:12]} (events deleted or appended outside Tether)")
    return Verification(True, checked)
