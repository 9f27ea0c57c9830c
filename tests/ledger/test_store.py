"""The event log on real SQLite and PostgreSQL: appends, the chain, tampering, crashes."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from tether.ledger import ConcurrentAppend, Ledger, UnknownRun
from tether.ledger.chain import GENESIS, event_hash


def fill(ledger: Ledger, run_id: str, n: int = 6) -> None:
    ledger.create_run(run_id, repo="/r", instruction="task")
    for i in range(n):
        ledger.append(run_id, "tool_call", {"i": i, "text": "héllo ✓", "nested": {"b": [1, 2.5, None]}})


def sql(ledger: Ledger, statement: str, **params) -> None:
    with ledger.engine.begin() as conn:
        conn.execute(text(statement), params)


@pytest.fixture
def store(db_url: str):
    ledger = Ledger(db_url)
    yield ledger
    ledger.close()


def test_append_builds_a_verifiable_chain(store: Ledger):
    fill(store, "r1")
    events = store.events("r1")
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert events[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    e = events[2]
    assert e.hash == event_hash(e.prev_hash, e.run_id, e.seq, e.ts, e.type, e.payload_json)
    assert e.payload == {"i": 2, "text": "héllo ✓", "nested": {"b": [1, 2.5, None]}}
    result = store.verify("r1")
    assert result.ok and result.checked == 6


def test_a_second_ledger_sees_the_head(store: Ledger, db_url: str):
    fill(store, "r1", 2)
    other = Ledger(db_url)
    other.append("r1", "note", {})
    assert other.verify("r1").ok and len(other.events("r1")) == 3
    other.close()


def test_stale_writer_cannot_fork_the_chain(store: Ledger, db_url: str):
    fill(store, "r1", 2)
    other = Ledger(db_url)
    other.append("r1", "from_other", {})
    with pytest.raises(ConcurrentAppend):
        store.append("r1", "stale", {})  # store's cached head is behind
    store.append("r1", "after_refresh", {})  # it re-reads the head and goes on
    assert store.verify("r1").ok
    assert [e.type for e in store.events("r1")][-2:] == ["from_other", "after_refresh"]
    other.close()


def test_edited_payload_is_named(store: Ledger):
    fill(store, "r1")
    sql(store, "UPDATE events SET payload = :p WHERE run_id = 'r1' AND seq = 3", p='{"i":99}')
    result = store.verify("r1")
    assert not result.ok and result.bad_seq == 3 and "edited" in result.problem


def test_edited_type_or_timestamp_is_named(store: Ledger):
    fill(store, "r1")
    sql(store, "UPDATE events SET ts = ts + 1 WHERE run_id = 'r1' AND seq = 4")
    assert store.verify("r1").bad_seq == 4


def test_deleted_middle_event_is_named(store: Ledger):
    fill(store, "r1")
    sql(store, "DELETE FROM events WHERE run_id = 'r1' AND seq = 2")
    result = store.verify("r1")
    assert not result.ok and result.bad_seq == 3 and "missing" in result.problem


def test_deleted_tail_is_caught_by_the_run_head(store: Ledger):
    fill(store, "r1")
    sql(store, "DELETE FROM events WHERE run_id = 'r1' AND seq = 6")
    result = store.verify("r1")
    assert not result.ok and result.bad_seq == 6 and "deleted" in result.problem


def test_inserted_event_is_named(store: Ledger):
    fill(store, "r1")
    sql(store, "UPDATE events SET seq = seq + 1000 WHERE run_id = 'r1' AND seq >= 4")
    sql(store, "UPDATE events SET seq = seq - 999 WHERE run_id = 'r1' AND seq >= 1000")
    sql(store, "INSERT INTO events (run_id, seq, ts, type, payload, prev_hash, hash) "
               "SELECT run_id, 4, ts, 'forged', '{}', prev_hash, hash FROM events WHERE run_id='r1' AND seq=3")
    result = store.verify("r1")
    assert not result.ok and result.bad_seq is not None and result.bad_seq <= 5


def test_reordered_events_are_named(store: Ledger):
    fill(store, "r1")
    sql(store, "UPDATE events SET seq = 1000 WHERE run_id = 'r1' AND seq = 2")
    sql(store, "UPDATE events SET seq = 2 WHERE run_id = 'r1' AND seq = 3")
    sql(store, "UPDATE events SET seq = 3 WHERE run_id = 'r1' AND seq = 1000")
    result = store.verify("r1")
    assert not result.ok and result.bad_seq in (2, 3)


def test_unknown_run_and_prefixes(store: Ledger):
    fill(store, "20260101-aaa", 1)
    fill(store, "20260101-aab", 1)
    assert store.get_run("20260101-aaa").id == "20260101-aaa"
    with pytest.raises(UnknownRun, match="ambiguous"):
        store.get_run("20260101-aa")
    with pytest.raises(UnknownRun, match="no run"):
        store.get_run("nope")
    with pytest.raises(UnknownRun):
        store.append("nope", "x", {})


def test_non_json_payload_is_refused_before_anything_is_written(store: Ledger):
    fill(store, "r1", 1)
    with pytest.raises(ValueError):
        store.append("r1", "bad", {"x": float("nan")})
    assert store.verify("r1").ok and len(store.events("r1")) == 1


WRITER = """
import sys
from tether.ledger import Ledger
ledger = Ledger(sys.argv[1])
ledger.create_run(sys.argv[2], repo="/r", instruction="crash me")
i = 0
while True:
    ledger.append(sys.argv[2], "tool_result", {"i": i, "output": "x" * 5000})
    i += 1
    if i == 10:  # a loaded machine may take a while to get here; the kill comes after
        print("ready", flush=True)
"""


def test_sigkill_mid_append_never_leaves_a_half_event(db_url: str, tmp_path: Path):
    for attempt in range(3):
        run_id = f"crash{attempt}"
        proc = subprocess.Popen([sys.executable, "-c", WRITER, db_url, run_id], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.3 + 0.1 * attempt)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        ledger = Ledger(db_url)
        result = ledger.verify(run_id)
        assert result.ok, result
        assert result.checked > 5
        ledger.append(run_id, "after_crash", {})  # the chain goes on where it stopped
        assert ledger.verify(run_id).ok
        ledger.close()


def test_append_many_is_one_verifiable_transaction(store: Ledger):
    store.create_run("bulk", repo="/r", instruction="import")
    store.append("bulk", "first", {})
    # integer timestamps (as some recorded formats have) must verify once read back as floats
    assert store.append_many("bulk", [("a", {"x": 1}, 1_700_000_000), ("b", {"y": [1, 2]}, 1_700_000_001.5)]) == 2
    assert [e.seq for e in store.events("bulk")] == [1, 2, 3]
    assert store.verify("bulk").ok
    with pytest.raises(ValueError):
        store.append_many("bulk", [("c", {}, 1.0), ("d", {"bad": float("inf")}, 2.0)])
    assert len(store.events("bulk")) == 3 and store.verify("bulk").ok  # all or nothing
