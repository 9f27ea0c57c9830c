"""Brakes: detectors that stop a stuck agent. Each is a fold over the event stream (tool_call and
tool_result events), never over agent internals, so backtests run the same code on imported runs."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tether.ledger.chain import canonical_json
from tether.policy.schema import BrakesPolicy


@dataclass(frozen=True)
class BrakeHit:
    detector: str
    reason: str
    evidence: dict[str, Any]


@dataclass
class Brakes:
    policy: BrakesPolicy
    recent: deque[str] = field(default_factory=deque)
    failures: int = 0
    unchanged: int = 0
    last_tree: str | None = None

    def observe(self, type_: str, payload: dict[str, Any]) -> BrakeHit | None:
        if type_ == "tool_call":
            return self._repeat(payload)
        if type_ == "tool_result":
            return self._failures(payload) or self._progress(payload)
        if type_ == "run_started":
            self.last_tree = payload.get("base_tree")
        return None

    def _repeat(self, payload: dict[str, Any]) -> BrakeHit | None:
        limit = self.policy.repeat_max
        action = canonical_json({"name": payload.get("name"), "arguments": payload.get("arguments")})
        self.recent.append(action)
        while len(self.recent) > self.policy.repeat_window:
            self.recent.popleft()
        if limit is None:
            return None
        count = sum(1 for seen in self.recent if seen == action)
        if count > limit:
            return BrakeHit("repeat", f"the same action {count} times in the last {len(self.recent)}",
                            {"action": payload.get("name"), "arguments": payload.get("arguments"),
                             "count": count, "window": self.policy.repeat_window})
        return None

    def _failures(self, payload: dict[str, Any]) -> BrakeHit | None:
        self.failures = 0 if payload.get("ok") else self.failures + 1
        limit = self.policy.max_consecutive_failures
        if limit is not None and self.failures >= limit:
            return BrakeHit("consecutive_failures", f"{self.failures} failed tool calls in a row",
                            {"count": self.failures, "last_call": payload.get("call_id")})
        return None

    def _progress(self, payload: dict[str, Any]) -> BrakeHit | None:
        tree = payload.get("tree")
        if tree is None:  # an imported step with no snapshot says nothing about progress
            return None
        self.unchanged = self.unchanged + 1 if tree == self.last_tree else 0
        self.last_tree = tree
        limit = self.policy.max_steps_without_change
        if limit is not None and self.unchanged >= limit:
            return BrakeHit("no_progress", f"{self.unchanged} tool steps without changing the worktree",
                            {"count": self.unchanged, "tree": self.last_tree})
        return None
