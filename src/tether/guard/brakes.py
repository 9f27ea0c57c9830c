"""Brakes: detectors that stop a stuck agent. Each is a fold over the event stream (model_response,
tool_call and tool_result events), never over agent internals, so backtests run the same code on
imported runs of other agents."""

from __future__ import annotations

import bisect
import hashlib
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tether.ledger import events as ev
from tether.ledger.chain import canonical_json
from tether.policy.schema import BrakesPolicy

# Output that differs between two runs of the same command: durations and memory addresses.
VOLATILE = re.compile(r"\b\d+(\.\d+)?\s?(ms|s|sec|seconds)\b|0x[0-9a-f]{6,}")
TEST_COMMAND = re.compile(
    r"\b(pytest|py\.test|tox|nox|unittest|runtests|manage\.py\s+test|mvn\b.*\btest|gradlew?\b.*\btest"
    r"|npm\s+(run\s+)?test|go\s+test|cargo\s+test|make\s+(check|test)|reproduce\w*\.(py|sh|java))"
)


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

    def observe(self, payload: ev.Payload) -> BrakeHit | None:
        if isinstance(payload, ev.ToolCall):
            return self._repeat(payload)
        if isinstance(payload, ev.ToolResult):
            return (self._failures(payload) or self._progress(payload) or self._repeat_output(payload)
                    or self._stale_tests(payload))
        if isinstance(payload, ev.ModelResponse):
            return self._idle_turns(payload) or self._burn_rate(payload)
        if isinstance(payload, ev.RunStarted):
            self.last_tree = payload.base_tree
        return None

    def _repeat(self, payload: ev.ToolCall) -> BrakeHit | None:
        arguments = payload.arguments
        if payload.name == "bash":
            self.commands[payload.call_id] = str(arguments.get("command", ""))
        limit = self.policy.repeat_max
        if limit is None:
            return None
        action = canonical_json({"name": payload.name, "arguments": arguments})
        self.recent.append(action)
        if len(self.recent) > self.policy.repeat_window:
            self.recent.popleft()
        count = self.recent.count(action)
        if count > limit:
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
        self.unchanged = 0 if changed else self.unchanged + 1
        self.last_tree = tree
        limit = self.policy.max_steps_without_change
        if limit is not None and self.unchanged >= limit:
            return BrakeHit("no_progress", f"{self.unchanged} tool steps without changing the worktree",
                            {"count": self.unchanged, "tree": self.last_tree})
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
        if factor is None:
            return None
        bisect.insort(self.sorted_costs, cost)
        if len(self.costs) < self.policy.burn_rate_min_steps:
            return None
        window = self.costs[-self.policy.burn_rate_window:]
        middle = len(self.sorted_costs) // 2
        median = (self.sorted_costs[middle] if len(self.sorted_costs) % 2
                  else (self.sorted_costs[middle - 1] + self.sorted_costs[middle]) / 2)
        recent = sum(window) / len(window)
        if median > 0 and recent > factor * median:
            return BrakeHit("burn_rate", f"the last {len(window)} steps cost {recent / median:.1f}x the run's "
                            "median step", {"recent_usd_per_step": recent, "median_usd_per_step": median})
        return None
