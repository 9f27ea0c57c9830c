"""Fleet rows on real SQLite and PostgreSQL: check-and-spend under concurrent threads never
overshoots, switches match their scopes, slots free themselves when their holder dies."""

from __future__ import annotations

import threading

import pytest

from tether.ledger import Ledger
from tether.ledger.fleet import Fleet, next_day_at, switch_scopes, today


def _hammer(workers: int, action) -> None:
    threads = [threading.Thread(target=action) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_concurrent_usd_reservations_stop_within_one_step_of_the_limit(db_url: str):
    fleet = Fleet(Ledger(db_url))
    admitted: list[float] = []

    def spend() -> None:
        local = Fleet(Ledger(db_url))  # a connection pool per worker, as in separate processes
        while local.reserve_usd("2026-01-01", 0.1, 1.0) is not None:
            admitted.append(0.1)

    _hammer(8, spend)
    total = next(u.usd for u in fleet.usage("2026-01-01") if u.scope == "org")
    assert total == pytest.approx(sum(admitted))
    assert 1.0 <= total < 1.0 + 0.1 + 1e-9  # reservations stop once the limit is reached


def test_settling_replaces_a_reservation_by_the_real_cost(db_url: str):
    fleet = Fleet(Ledger(db_url))
    assert fleet.reserve_usd("2026-01-01", 0.5, 1.0) is not None
    fleet.settle_usd("2026-01-01", 0.2 - 0.5)
    assert fleet.usage("2026-01-01")[0].usd == pytest.approx(0.2)


def test_lines_per_repository_day_refuse_what_does_not_fit(db_url: str):
    fleet = Fleet(Ledger(db_url))
    assert fleet.add_lines("2026-01-01", "/r", 80, 100) is not None
    assert fleet.add_lines("2026-01-01", "/r", 30, 100) is None  # would be 110
    assert fleet.add_lines("2026-01-01", "/other", 30, 100) is not None  # per repository
    assert fleet.add_lines("2026-01-01", "/r", -20, 100).lines == 60  # a shrinking diff gives lines back
    assert fleet.add_lines("2026-01-02", "/r", 100, 100) is not None  # a new day


def test_concurrent_line_counts_never_pass_the_limit(db_url: str):
    def count() -> None:
        local = Fleet(Ledger(db_url))
        for _ in range(10):
            local.add_lines("2026-01-01", "/r", 7, 100)

    _hammer(6, count)
    lines = next(u.lines for u in Fleet(Ledger(db_url)).usage("2026-01-01") if u.scope == "repo:/r")
    assert lines == 98  # 14 of the 60 fit; none of the others slipped through


def test_switches_match_everything_a_repository_or_a_task(db_url: str):
    fleet = Fleet(Ledger(db_url))
    assert fleet.active_switch("/r", "t1") is None
    fleet.set_switch("task:t1", "cancelled", "ann")
    assert fleet.active_switch("/r", "t1").scope == "task:t1"
    assert fleet.active_switch("/r", "t2") is None
    fleet.set_switch("repo:/r", "incident", "bob")
    assert fleet.active_switch("/r", "t2").reason == "incident"
    assert fleet.active_switch("/other", "t2") is None
    fleet.set_switch("all", "stop everything", "cat")
    assert fleet.active_switch("/other", "t2").scope == "all"
    assert fleet.release_switch("all", "ops") and not fleet.release_switch("all", "ops")
    assert [s.scope for s in fleet.switches()] == ["task:t1", "repo:/r"]
    assert switch_scopes("/r", "t1") == ["all", "repo:/r", "task:t1"]


def test_repository_slots_are_limited_and_freed_when_the_holder_dies(db_url: str):
    fleet = Fleet(Ledger(db_url))
    alive = {"a": True, "b": True, "c": True}
    is_alive = lambda owner, _heartbeat: alive[owner]  # noqa: E731
    assert fleet.acquire_slot("/r", "t1", "a", 2, is_alive)
    assert fleet.acquire_slot("/r", "t2", "b", 2, is_alive)
    assert not fleet.acquire_slot("/r", "t3", "c", 2, is_alive)
    assert fleet.acquire_slot("/r", "t1", "a", 2, is_alive)  # a holder may take its own slot again
    assert fleet.acquire_slot("/s", "t4", "c", 2, is_alive)  # another repository
    alive["b"] = False
    assert fleet.acquire_slot("/r", "t3", "c", 2, is_alive)  # t2's dead holder no longer counts
    fleet.release_slot("t1")
    assert fleet.slots("/r") == 1


def test_day_boundaries_are_utc():
    assert today(0) == "1970-01-01"
    assert next_day_at(3600) == 86400
