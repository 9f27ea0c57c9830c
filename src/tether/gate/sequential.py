"""An always-valid comparison of two arms that tasks are routed to at random: a confidence sequence
for the difference of their means, which may be looked at after every task without inflating the
error rate (peeking is the point of a canary).

The estimate is inverse-propensity weighted: a task routed to the candidate with probability p
contributes (y - c) / p, one routed to the current configuration -(y - c) / (1 - p), where c is the
mean of the outcomes seen before it (a predictable centring: it keeps every term unbiased for the
difference and removes most of the variance the raw weights add). The interval is the asymptotic
confidence sequence of Waudby-Smith, Arnold, Wu, Howard and Ramdas, "Time-uniform central limit
theory and asymptotic confidence sequences" (Annals of Statistics, 2024), Theorem 2.2:

    mean_t +/- sqrt( 2 (t s_t^2 rho^2 + 1) / (t^2 rho^2) * log( sqrt(t s_t^2 rho^2 + 1) / alpha ) )

with rho chosen to make it tightest around `tuned_for` tasks. It holds for all t at once with
probability about 1 - alpha (asymptotically; benchmarks/bench_canary.py measures the real
false-promotion rate at the sizes a canary runs at).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def rho_for(tuned_for: int, alpha: float) -> float:
    """The mixing width that minimises the boundary at `tuned_for` samples (the paper's eq. 2.7)."""
    two_log = -2 * math.log(alpha)
    return math.sqrt((two_log + math.log(two_log + 1)) / tuned_for)


@dataclass
class DifferenceSequence:
    """Running confidence sequence for mean(candidate) - mean(current)."""

    share: float  # probability a task goes to the candidate
    alpha: float = 0.05
    tuned_for: int = 500
    t: int = 0
    _sum: float = 0.0
    _sum_sq: float = 0.0
    _outcomes: float = 0.0  # sum of raw outcomes, for the centring
    _rho: float = field(init=False)

    def __post_init__(self) -> None:
        if not 0 < self.share < 1:
            raise ValueError(f"share must be strictly between 0 and 1, got {self.share}")
        self._rho = rho_for(self.tuned_for, self.alpha)

    def add(self, to_candidate: bool, outcome: float) -> None:
        centre = self._outcomes / self.t if self.t else 0.0
        weight = 1 / self.share if to_candidate else -1 / (1 - self.share)
        term = (outcome - centre) * weight
        self.t += 1
        self._sum += term
        self._sum_sq += term * term
        self._outcomes += outcome

    @property
    def estimate(self) -> float | None:
        return self._sum / self.t if self.t else None

    def interval(self) -> tuple[float, float] | None:
        """(lower, upper), valid at every t at once; None before two tasks."""
        if self.t < 2:
            return None
        mean = self._sum / self.t
        variance = max(self._sum_sq / self.t - mean * mean, 1e-12)
        scaled = self.t * variance * self._rho ** 2
        half = math.sqrt(2 * (scaled + 1) / (self.t ** 2 * self._rho ** 2)
                         * math.log(math.sqrt(scaled + 1) / self.alpha))
        return mean - half, mean + half
