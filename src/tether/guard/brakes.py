"""Brakes: detectors that stop a stuck agent. Each is a fold over the event stream (model_response,
tool_call and tool_result events), never over agent internals, so backtests run the same code on
imported runs of other agents."""

from __future__ import annotations

import bisect
import hashlib
import math
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tether.guard.signals import error_signature, failing_tests
from tether.ledger import events as ev
from tether.ledger.chain import canonical_json
from tether.policy.schema import BrakesPolicy
from tether.stats import sigmoid

# Output that differs between two runs of the same command: durations and memory addresses.
VOLATILE = re.compile(r"\b\d+(\.\d+)?\s?(ms|s|sec|seconds)\b|0x[0-9a-f]{6,}")
TEST_COMMAND = re.compile(
    r"\b(pytest|py\.test|tox|nox|unittest|runtests|manage\.py\s+test|mvn\b.*\btest|gradlew?\b.*\btest"
    r"|npm\s+(run\s+)?test|go\s+test|cargo\s+test|make\s+(check|test)|reproduce\w*\.(py|sh|java))"
)


REVERT = re.compile(r"\bgit\s+(checkout\s+(--\s+)?[\w./-]+|restore|stash|reset\s+--hard)\b")


def masked_digest(text: str) -> str:
    return hashlib.sha256(VOLATILE.sub("", text).encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class BrakeHit:
    detector: str
    reason: str
    evidence: dict[str, Any]


@dataclass
class Brakes:
    policy: BrakesPolicy
    recent: deque[str] = field(default_factory=deque)
    recent_outputs: deque[str] = field(default_factory=deque)
    failures: int = 0
    unchanged: int = 0
    last_tree: str | None = None
    commands: dict[str, str] = field(default_factory=dict)  # call id -> command, until its result
    tests: dict[str, str] = field(default_factory=dict)  # test command -> masked output of its last run
    edited_since_test: dict[str, bool] = field(default_factory=dict)
    stale_cycles: int = 0
    costs: list[float] = field(default_factory=list)
    idle_turns: int = 0
    sorted_costs: list[float] = field(default_factory=list)
    best_failing: int | None = None  # the fewest failing tests seen so far
    edited_since_count: bool = False
    stale_failing: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # error signature -> times seen
    edited: bool = False  # the worktree has changed at least once
    unchanged_after_edit: int = 0
    outputs_seen: set[str] = field(default_factory=set)
    repeated_outputs: int = 0
    results: int = 0
    trees_seen: set[str] = field(default_factory=set)
    churn: int = 0
    repeats: int = 0  # times the last action occurs in the repeat window
    burn_ratio: float = 0.0  # the recent cost per step over the run's median
    counting: bool = False  # keep every detector's tally (for the stop score, or to fit one)
    shadowed: set[str] = field(default_factory=set)  # shadow-mode detectors that have fired (recorded once)
    shadow_hits: list[BrakeHit] = field(default_factory=list)  # fired in shadow mode, not yet recorded

    def __post_init__(self) -> None:
        self.counting = self.counting or self.policy.score is not None

    def observe(self, payload: ev.Payload) -> BrakeHit | None:
        """The first brake this event fires, if any. Every detector folds every event (a brake in
        shadow mode only records, and the others go on counting); a shadowed brake's first hit is
        kept in `shadow_hits` for the log to record."""
        if isinstance(payload, ev.AttemptStarted):  # an independent try: nothing of the last one counts
            fresh = Brakes(self.policy, counting=self.counting)
            fresh.shadowed = self.shadowed
            self.__dict__.update(fresh.__dict__)
            return None
        if isinstance(payload, ev.BrakeShadowed):  # recorded (or, rebuilding a log, read back)
            self.shadowed.add(payload.detector)
            return None
        if isinstance(payload, ev.ToolCall):
            return self._first([self._repeat(payload)])
        if isinstance(payload, ev.ToolResult):
            command = self.commands.get(payload.call_id, "")
            return self._first([self._failures(payload), self._churn(payload, command), self._progress(payload),
                                self._repeat_output(payload), self._failing_count(payload, command),
                                self._stale_tests(payload), self._errors(payload), self._seen_outputs(payload),
                                self._score()])
        if isinstance(payload, ev.ModelResponse):
            return self._first([self._idle_turns(payload), self._burn_rate(payload)])
        if isinstance(payload, ev.RunStarted):
            self.last_tree = payload.base_tree
        return None

    def _first(self, hits: list[BrakeHit | None]) -> BrakeHit | None:
        for hit in hits:
            if hit is None:
                continue
            if not self.policy.shadows(hit.detector):
                return hit
            if hit.detector not in self.shadowed:
                self.shadowed.add(hit.detector)
                self.shadow_hits.append(hit)
        return None

    def _repeat(self, payload: ev.ToolCall) -> BrakeHit | None:
        arguments = payload.arguments
        if payload.name == "bash":
            self.commands[payload.call_id] = str(arguments.get("command", ""))
        limit = self.policy.repeat_max
        if limit is None and not self.counting:
            return None
        action = canonical_json({"name": payload.name, "arguments": arguments})
        self.recent.append(action)
        if len(self.recent) > self.policy.repeat_window:
            self.recent.popleft()
        count = self.repeats = self.recent.count(action)
        if limit is not None and count > limit:
            return BrakeHit("repeat", f"the same action {count} times in the last {len(self.recent)}",
                            {"action": payload.name, "arguments": arguments,
                             "count": count, "window": self.policy.repeat_window})
        return None

    def _failures(self, payload: ev.ToolResult) -> BrakeHit | None:
        ok = payload.ok
        if ok is None:  # not recorded (some imported formats): says nothing either way
            return None
        self.failures = 0 if ok else self.failures + 1
        limit = self.policy.max_consecutive_failures
        if limit is not None and self.failures >= limit:
            return BrakeHit("consecutive_failures", f"{self.failures} failed tool calls in a row",
                            {"count": self.failures, "last_call": payload.call_id})
        return None

    def _progress(self, payload: ev.ToolResult) -> BrakeHit | None:
        tree = payload.tree
        if tree is None:  # an imported step with no snapshot says nothing about progress
            return None
        changed = tree != self.last_tree
        if changed:
            self.edited_since_test = dict.fromkeys(self.edited_since_test, True)
            self.edited = self.edited_since_count = True
        self.unchanged = 0 if changed else self.unchanged + 1
        self.unchanged_after_edit = 0 if changed or not self.edited else self.unchanged_after_edit + 1
        self.last_tree = tree
        limit = self.policy.max_steps_without_change
        if limit is not None and self.unchanged >= limit:
            return BrakeHit("no_progress", f"{self.unchanged} tool steps without changing the worktree",
                            {"count": self.unchanged, "tree": self.last_tree})
        limit = self.policy.max_steps_after_edit_without_change
        if limit is not None and self.unchanged_after_edit >= limit:
            return BrakeHit("exploring_after_edit", f"{self.unchanged_after_edit} tool steps without a change "
                            "since the last edit", {"count": self.unchanged_after_edit})
        return None

    def _churn(self, payload: ev.ToolResult, command: str) -> BrakeHit | None:
        """Edits undone: the worktree back in a state it left (or, where runs carry no snapshots,
        a command that reverts files)."""
        limit = self.policy.churn_max
        tree = payload.tree
        if (limit is None and not self.counting) or tree is None or tree == self.last_tree:
            return None
        if tree in self.trees_seen or REVERT.search(command):
            self.churn += 1
        self.trees_seen.add(self.last_tree or "")
        if limit is not None and self.churn >= limit:
            return BrakeHit("churn", f"edits undone {self.churn} times", {"count": self.churn, "command": command})
        return None

    def _failing_count(self, payload: ev.ToolResult, command: str) -> BrakeHit | None:
        """Edit-and-test cycles after which no fewer tests fail than at the best point so far."""
        limit = self.policy.stale_failing_cycles
        if (limit is None and not self.counting) or not TEST_COMMAND.search(command):
            return None
        failing = failing_tests(payload.observation)
        if failing is None:
            return None
        if self.best_failing is None or failing < self.best_failing:
            self.best_failing, self.stale_failing = failing, 0
        elif self.edited_since_count and failing > 0:
            self.stale_failing += 1
        self.edited_since_count = False
        if limit is not None and self.stale_failing >= limit:
            return BrakeHit("stale_failing", f"{self.stale_failing} edit-and-test cycles without fewer failing "
                            f"tests (best {self.best_failing}, now {failing})",
                            {"cycles": self.stale_failing, "best": self.best_failing, "now": failing})
        return None

    def _errors(self, payload: ev.ToolResult) -> BrakeHit | None:
        limit = self.policy.error_repeat_max
        if limit is None and not self.counting:
            return None
        signature = error_signature(payload.observation)
        if signature is None:
            return None
        count = self.errors[signature] = self.errors.get(signature, 0) + 1
        if limit is not None and count >= limit:
            return BrakeHit("error_repeat", f"the same error {count} times: {signature[:120]}",
                            {"signature": signature, "count": count})
        return None

    def _seen_outputs(self, payload: ev.ToolResult) -> BrakeHit | None:
        share = self.policy.seen_output_share
        if share is None and not self.counting:
            return None
        seen = payload.output_digest or masked_digest(payload.observation)
        self.results += 1
        if seen in self.outputs_seen:
            self.repeated_outputs += 1
        self.outputs_seen.add(seen)
        if share is None or self.results < self.policy.seen_output_min_steps:
            return None
        if self.repeated_outputs / self.results >= share:
            return BrakeHit("seen_outputs", f"{self.repeated_outputs} of {self.results} steps gave an output "
                            "already seen", {"repeated": self.repeated_outputs, "steps": self.results})
        return None

    def _repeat_output(self, payload: ev.ToolResult) -> BrakeHit | None:
        limit = self.policy.repeat_output_max
        command = self.commands.get(payload.call_id)
        if limit is None or command is None:
            return None
        seen = f"{command}\0{payload.output_digest or masked_digest(payload.observation)}"
        self.recent_outputs.append(seen)
        if len(self.recent_outputs) > self.policy.repeat_window:
            self.recent_outputs.popleft()
        count = self.recent_outputs.count(seen)
        if count > limit:
            return BrakeHit("repeat_output", f"the same command gave the same output {count} times",
                            {"command": command, "count": count, "window": self.policy.repeat_window})
        return None

    def _stale_tests(self, payload: ev.ToolResult) -> BrakeHit | None:
        command = self.commands.pop(payload.call_id, None)
        if self.policy.stale_test_cycles is None or command is None or not TEST_COMMAND.search(command):
            return None
        output = masked_digest(payload.observation)
        previous = self.tests.get(command)
        if previous is not None and self.edited_since_test.get(command):
            self.stale_cycles = self.stale_cycles + 1 if output == previous else 0
        self.tests[command] = output
        self.edited_since_test[command] = False
        if self.stale_cycles >= self.policy.stale_test_cycles:
            return BrakeHit("stale_tests", f"{self.stale_cycles} edit-and-test cycles left the test output "
                            "unchanged", {"command": command, "cycles": self.stale_cycles})
        return None

    def _idle_turns(self, payload: ev.ModelResponse) -> BrakeHit | None:
        self.idle_turns = 0 if payload.tool_calls else self.idle_turns + 1
        limit = self.policy.max_turns_without_action
        if limit is not None and self.idle_turns >= limit:
            return BrakeHit("no_action", f"{self.idle_turns} model turns in a row without an action",
                            {"count": self.idle_turns})
        return None

    def _burn_rate(self, payload: ev.ModelResponse) -> BrakeHit | None:
        factor = self.policy.burn_rate_factor
        cost = payload.cost_usd
        self.costs.append(cost)
        if factor is None and not self.counting:
            return None
        bisect.insort(self.sorted_costs, cost)
        if len(self.costs) < self.policy.burn_rate_min_steps:
            return None
        window = self.costs[-self.policy.burn_rate_window:]
        middle = len(self.sorted_costs) // 2
        median = (self.sorted_costs[middle] if len(self.sorted_costs) % 2
                  else (self.sorted_costs[middle - 1] + self.sorted_costs[middle]) / 2)
        recent = sum(window) / len(window)
        self.burn_ratio = recent / median if median > 0 else 0.0
        if factor is not None and median > 0 and recent > factor * median:
            return BrakeHit("burn_rate", f"the last {len(window)} steps cost {recent / median:.1f}x the run's "
                            "median step", {"recent_usd_per_step": recent, "median_usd_per_step": median})
        return None

    def features(self) -> dict[str, float]:
        """The run so far as the stop score reads it: every detector's tally, log-scaled where it
        counts (agents differ in how long they run; a log lets one weight serve them all)."""
        return {
            "steps": math.log1p(len(self.costs)),
            "usd": math.log1p(sum(self.costs)),
            "consecutive_failures": math.log1p(self.failures),
            "steps_without_change": math.log1p(self.unchanged),
            "steps_after_edit_without_change": math.log1p(self.unchanged_after_edit),
            "repeats": math.log1p(self.repeats),
            "seen_output_share": self.repeated_outputs / self.results if self.results else 0.0,
            "stale_test_cycles": math.log1p(self.stale_cycles),
            "stale_failing_cycles": math.log1p(self.stale_failing),
            "error_repeats": math.log1p(max(self.errors.values(), default=0)),
            "churn": math.log1p(self.churn),
            "burn_ratio": math.log1p(self.burn_ratio),
        }

    def _score(self) -> BrakeHit | None:
        """The fitted stop score: a logistic model of failure over the features, stopping at its
        threshold; the hit names the features that pushed it there."""
        score = self.policy.score
        if score is None or self.results < score.min_steps:
            return None
        features = self.features()
        contributions = {name: weight * features.get(name, 0.0) for name, weight in score.weights.items()}
        probability = sigmoid(score.bias + sum(contributions.values()))
        if probability < score.threshold:
            return None
        fired = sorted(((name, value) for name, value in contributions.items() if value > 0), key=lambda kv: -kv[1])
        return BrakeHit("score", f"stop score {probability:.2f} (threshold {score.threshold:.2f}): "
                        + ", ".join(name for name, _ in fired[:3]),
                        {"score": round(probability, 4), "threshold": score.threshold,
                         "features": {name: round(features[name], 4) for name, _ in fired if name in features},
                         "contributions": {name: round(value, 4) for name, value in fired}})
