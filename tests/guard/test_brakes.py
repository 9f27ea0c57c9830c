"""Brakes as pure folds over event payloads (the same code backtests will run)."""

from __future__ import annotations

from tests.conftest import typed
from tether.guard.brakes import Brakes
from tether.policy.schema import BrakesPolicy


def call(command: str) -> tuple[str, dict]:
    return "tool_call", {"name": "bash", "arguments": {"command": command}}


def result(ok: bool, tree: str | None) -> tuple[str, dict]:
    return "tool_result", {"ok": ok, "tree": tree}


def feed(brakes: Brakes, events: list[tuple[str, dict]]):
    for index, (kind, payload) in enumerate(events):
        hit = brakes.observe(typed(kind, payload))
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
    brakes.observe(typed("run_started", {"base_tree": "t0"}))
    events = [result(True, "t0"), result(True, "t0"), result(True, "t1"), result(True, "t1"),
              result(True, None), result(True, "t1")]
    assert feed(brakes, events) == (None, None)
    _index, hit = feed(brakes, [result(True, "t1")])
    assert hit.detector == "no_progress" and hit.evidence["count"] == 3


def test_disabled_brakes_never_fire():
    brakes = Brakes(BrakesPolicy(repeat_max=None, max_consecutive_failures=None, max_steps_without_change=None))
    assert feed(brakes, [call("a")] * 50 + [result(False, "t")] * 50) == (None, None)


def only(**knobs) -> Brakes:
    base = {"repeat_max": None, "max_consecutive_failures": None, "max_steps_without_change": None,
            "max_turns_without_action": None}
    return Brakes(BrakesPolicy(**{**base, **knobs}))


def step(brakes: Brakes, n: int, command: str, observation: str, tree: str = "t0"):
    hits = [brakes.observe(typed("tool_call", {"call_id": f"c{n}", "name": "bash", "arguments": {"command": command}})),
            brakes.observe(typed("tool_result", {"call_id": f"c{n}", "ok": True, "tree": tree,
                                                 "observation": observation}))]
    return next((h for h in hits if h), None)


def test_repeat_output_needs_the_same_command_and_the_same_output():
    brakes = only(repeat_output_max=2, repeat_window=10)
    assert step(brakes, 1, "cat a", "x") is None
    assert step(brakes, 2, "cat a", "y") is None  # same command, new output: progress of a kind
    assert step(brakes, 3, "cat a", "x") is None
    hit = step(brakes, 4, "cat a", "x")
    assert hit.detector == "repeat_output" and hit.evidence["count"] == 3


def test_stale_tests_count_edit_then_test_cycles_with_unchanged_output():
    brakes = only(stale_test_cycles=2)
    assert step(brakes, 1, "python -m pytest -q", "1 failed in 0.12s") is None
    assert step(brakes, 2, "sed -i s/a/b/ x.py", "", tree="t1") is None
    assert step(brakes, 3, "python -m pytest -q", "1 failed in 0.31s") is None  # cycle 1 (timings masked)
    assert step(brakes, 4, "python -m pytest -q", "1 failed in 0.2s") is None  # no edit between: not a cycle
    assert step(brakes, 5, "sed -i s/b/c/ x.py", "", tree="t2") is None
    hit = step(brakes, 6, "python -m pytest -q", "1 failed in 0.4s")
    assert hit.detector == "stale_tests" and hit.evidence["cycles"] == 2


def test_stale_tests_reset_when_the_output_changes():
    brakes = only(stale_test_cycles=2)
    step(brakes, 1, "pytest", "1 failed")
    step(brakes, 2, "edit", "", tree="t1")
    step(brakes, 3, "pytest", "1 failed")
    step(brakes, 4, "edit", "", tree="t2")
    assert step(brakes, 5, "pytest", "1 passed") is None
    step(brakes, 6, "edit", "", tree="t3")
    assert step(brakes, 7, "pytest", "1 passed") is None


def test_burn_rate_compares_recent_steps_with_the_run_median():
    brakes = only(burn_rate_factor=3.0, burn_rate_window=2, burn_rate_min_steps=4)
    costs = [0.01, 0.01, 0.01, 0.01, 0.02, 0.02, 0.08]
    hits = [brakes.observe(typed("model_response", {"cost_usd": c})) for c in costs]
    assert hits[:6] == [None] * 6
    assert hits[6].detector == "burn_rate"  # (0.02 + 0.08) / 2 > 3 x median 0.01


def test_turns_without_an_action_brake():
    brakes = only(max_turns_without_action=3)
    assert brakes.observe(typed("model_response", {"tool_calls": []})) is None
    assert brakes.observe(typed("model_response", {"tool_calls": []})) is None
    action = {"tool_calls": [{"id": "c", "name": "bash", "arguments": {}}]}
    assert brakes.observe(typed("model_response", action)) is None  # an action resets it
    assert brakes.observe(typed("model_response", {"tool_calls": []})) is None
    assert brakes.observe(typed("model_response", {"tool_calls": []})) is None
    assert brakes.observe(typed("model_response", {"tool_calls": []})).detector == "no_action"


def test_stale_failing_counts_cycles_that_do_not_beat_the_best_failing_count():
    brakes = only(stale_failing_cycles=2)
    assert step(brakes, 1, "python -m pytest -q", "==== 3 failed, 1 passed in 0.1s ====") is None
    assert step(brakes, 2, "sed -i s/a/b/ x.py", "", tree="t1") is None
    assert step(brakes, 3, "python -m pytest -q", "==== 2 failed, 2 passed in 0.1s ====") is None  # better
    assert step(brakes, 4, "sed -i s/b/c/ x.py", "", tree="t2") is None
    assert step(brakes, 5, "python -m pytest -q", "==== 2 failed, 2 passed in 0.3s ====") is None  # cycle 1
    assert step(brakes, 6, "python -m pytest -q", "==== 2 failed, 2 passed in 0.3s ====") is None  # no edit
    assert step(brakes, 7, "sed -i s/c/d/ x.py", "", tree="t3") is None
    hit = step(brakes, 8, "python -m pytest -q", "==== 4 failed in 0.2s ====")  # worse than the best
    assert hit.detector == "stale_failing" and hit.evidence == {"cycles": 2, "best": 2, "now": 4}


def test_stale_failing_reads_maven_and_ignores_commands_that_are_not_tests():
    brakes = only(stale_failing_cycles=1)
    maven = "Tests run: 9, Failures: 1, Errors: 0, Skipped: 0\n[INFO] BUILD FAILURE"
    assert step(brakes, 1, "mvn -q test", maven) is None
    assert step(brakes, 2, "sed -i s/a/b/ A.java", "", tree="t1") is None
    assert step(brakes, 3, "cat notes.txt", "==== 5 failed in 0.1s ====") is None  # not a test command
    assert step(brakes, 4, "mvn -q test", maven).detector == "stale_failing"


def test_the_same_error_returning_fires_whatever_its_numbers_and_paths():
    brakes = only(error_repeat_max=3)
    first = 'Traceback (most recent call last):\n  File "/w/a.py", line 3\nKeyError: \'user_7\''
    assert step(brakes, 1, "python a.py", first) is None
    assert step(brakes, 2, "python a.py", "ValueError: bad") is None  # another error
    assert step(brakes, 3, "python b.py", first.replace("user_7", "user_12").replace("line 3", "line 9")) is None
    hit = step(brakes, 4, "python a.py", "File \"/x/y/a.py\"\nKeyError: 'other'")
    assert hit.detector == "error_repeat" and hit.evidence == {"signature": "KeyError: '?'", "count": 3}


def test_exploring_after_the_first_edit_counts_only_once_editing_began():
    brakes = only(max_steps_after_edit_without_change=3)
    brakes.observe(typed("run_started", {"base_tree": "t0"}))
    for n in range(10):  # exploring before any edit is how work starts
        assert step(brakes, n, "cat x", f"out {n}") is None
    assert step(brakes, 10, "edit", "", tree="t1") is None
    assert step(brakes, 11, "cat a", "", tree="t1") is None and step(brakes, 12, "cat b", "", tree="t1") is None
    hit = step(brakes, 13, "cat c", "", tree="t1")
    assert hit.detector == "exploring_after_edit" and hit.evidence["count"] == 3


def test_churn_counts_a_worktree_returning_to_an_earlier_state_and_reverting_commands():
    brakes = only(churn_max=2)
    brakes.observe(typed("run_started", {"base_tree": "t0"}))
    assert step(brakes, 1, "edit", "", tree="t1") is None
    assert step(brakes, 2, "edit", "", tree="t2") is None
    assert step(brakes, 3, "undo", "", tree="t1") is None  # back to a state it left: 1
    hit = step(brakes, 4, "git checkout -- a.py", "", tree="t9")  # an imported run's revert: 2
    assert hit.detector == "churn" and hit.evidence["count"] == 2


def test_seen_output_share_waits_for_enough_steps_then_fires_on_the_share():
    brakes = only(seen_output_share=0.5, seen_output_min_steps=6)
    outputs = ["a", "b", "a", "a", "c"]
    assert [step(brakes, n, f"cmd {n}", out) for n, out in enumerate(outputs)] == [None] * 5
    hit = step(brakes, 6, "cmd 6", "b")  # 3 of 6 outputs were seen before
    assert hit.detector == "seen_outputs" and hit.evidence == {"repeated": 3, "steps": 6}
