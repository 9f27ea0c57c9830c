"""The fleet's part of the guard: the kill switch and the org's daily limits, checked against shared
rows in the store at every step boundary, so they hold across every worker on every machine."""

from __future__ import annotations

import time
from dataclasses import dataclass

from tether.guard.decisions import RunHeld, RunStopped
from tether.ledger.fleet import Fleet, next_day_at, today
from tether.policy.schema import FleetPolicy


@dataclass
class FleetGate:
    fleet: Fleet
    limits: FleetPolicy
    repo: str
    run_id: str
    reservation: tuple[str, float] | None = None  # (day, USD) reserved for the step in flight
    largest_step_usd: float = 0.0
    lines_counted: int = 0  # this run's changed lines already counted against the repository's day
    # How long a switch found off is taken to stay off (the gateway's requests come milliseconds
    # apart; a step of Tether's own reads the store every time).
    switch_staleness_s: float = 0.0
    switch_off_until: float = 0.0

    def before_step(self, priced_estimate_usd: float) -> None:
        """Raise RunHeld if the switch is on or the org's daily USD is spent; else reserve the step."""
        if time.monotonic() >= self.switch_off_until:
            switch = self.fleet.active_switch(self.repo, self.run_id)
            if switch is not None:
                raise RunHeld(f"kill switch on {switch.scope} by {switch.by}: {switch.reason}", "fleet.kill_switch")
            self.switch_off_until = time.monotonic() + self.switch_staleness_s
        limit = self.limits.max_usd_per_day
        if limit is None:
            return
        estimate = max(priced_estimate_usd, self.largest_step_usd, self.limits.step_usd_estimate)
        day = today()
        if self.fleet.reserve_usd(day, estimate, limit) is None:
            raise self._over(f"the org's daily limit of ${limit:.2f} is spent", "fleet.max_usd_per_day")
        self.reservation = (day, estimate)

    def after_step(self, cost_usd: float) -> None:
        """Settle the reservation to what the step really cost (0 if the call failed)."""
        self.largest_step_usd = max(self.largest_step_usd, cost_usd)
        if self.reservation is not None:
            day, reserved = self.reservation
            self.reservation = None
            self.fleet.settle_usd(day, cost_usd - reserved)

    def count_lines(self, run_lines: int) -> str | None:
        """Count the growth of the run's diff against the repository's daily review capacity.
        Returns the refusal reason when it does not fit (the caller rolls the step back)."""
        delta = run_lines - self.lines_counted
        if delta == 0:
            return None
        limit = self.limits.max_lines_per_day_per_repo
        if self.fleet.add_lines(today(), self.repo, delta, limit) is None:
            return (f"the repository's daily review capacity of {limit} changed lines would be exceeded "
                    f"(+{delta} lines)")
        self.lines_counted = run_lines
        return None

    def over_lines(self, reason: str) -> RunHeld | RunStopped:
        return self._over(reason, "fleet.max_lines_per_day_per_repo")

    def _over(self, reason: str, rule: str) -> RunHeld | RunStopped:
        """Wait for the next UTC day (held), or end the run (stopped, work delivered), by policy."""
        if self.limits.on_limit == "wait":
            return RunHeld(f"{reason}; waiting for the next UTC day", rule, "waiting", next_day_at())
        return RunStopped(f"{reason}; refused by the org policy", rule)
