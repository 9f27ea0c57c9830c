"""Brakes as pure folds over event payloads (the same code backtests will run)."""

from __future__ import annotations

from tether.guard.brakes import Brakes
from tether.policy.schema import BrakesPolicy


def call(command: str) -> tuple[str, dict]:
    return "tool_call", {"name": "bash", "arguments": {"command": command}}


def result(ok: bool, tree: str | None) -> tuple[str, dict]:
    return "tool_result", {"ok": ok, "tree": tree}


def feed(brakes: Brakes, events: list[tuple[str, dict]]):
    for index, (kind, payload) in enumerate(events):
        hit = brakes.observe(kind, payload)
        if hit:
            return index, hit
    return None, None


def test_repeat_counts_only_within_the_window():
    brakes = Brakes(BrakesPolicy(repeat_max=2, repeat_window=3, max_consecutive_failures=None,
                                 max_steps_without_change=None))
    spaced = [call("a"), call("b"), call("c"), call("a"), call("b"), call("c"), call("a")]
    assert feed(brakes, spaced) == (None, None)
    brakes = Brakes(BrakesPolicy(repeat_max=2, repeat_window=4, max_consecutive_failures=None,
                                 max_steps_without_change=None))
    index, hit = feed(brakes, [call("a"), call("b"), call("a"), call("a")])
    assert index == 3 and hit.detector == "repeat" and hit.evidence["count"] == 3


def test_consecutive_failures_reset_on_success():
    brakes = Brakes(BrakesPolicy(repeat_max=None, max_consecutive_failures=3, max_steps_without_change=None))
    assert feed(brakes, [result(False, "t"), result(False, "t"), result(True, "t"), result(False, "t"),
                         result(False, "t")]) == (None, None)
    _index, hit = feed(brakes, [result(False, "t")])
    assert hit.detector == "consecutive_failures" and hit.evidence["count"] == 3


def test_no_progress_counts_unchanged_trees_and_ignores_unknown_ones():
    brakes = Brakes(BrakesPolicy(repeat_max=None, max_consecutive_failures=None, max_steps_without_change=3))
    brakes.observe("run_started", {"base_tree": "t0"})
    events = [result(True, "t0"), result(True, "t0"), result(True, "t1"), result(True, "t1"),
              result(True, None), result(True, "t1")]
    assert feed(brakes, events) == (None, None)
    _index, hit = feed(brakes, [result(True, "t1")])
    assert hit.detector == "no_progress" and hit.evidence["count"] == 3


def test_disabled_brakes_never_fire():
    brakes = Brakes(BrakesPolicy(repeat_max=None, max_consecutive_failures=None, max_steps_without_change=None))
    assert feed(brakes, [call("a")] * 50 + [result(False, "t")] * 50) == (None, None)
