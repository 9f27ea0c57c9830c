"""Small statistics shared by evals and backtests: intervals for proportions and paired differences,
an exact paired test, percentiles. Resampling is seeded, so a report rebuilt from the same runs is
the same report."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion (95% by default)."""
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_share(parts: list[tuple[float, float]], resamples: int = 1000, seed: int = 7) -> tuple[float, float]:
    """95% percentile interval of sum(a)/sum(b) over runs resampled with replacement."""
    if not parts:
        return (0.0, 0.0)
    rng = random.Random(seed)
    shares = []
    for _ in range(resamples):
        sample = [parts[rng.randrange(len(parts))] for _ in parts]
        total = sum(b for _, b in sample)
        shares.append(sum(a for a, _ in sample) / total if total else 0.0)
    shares.sort()
    return (shares[int(0.025 * resamples)], shares[int(0.975 * resamples) - 1])


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs (first passed alone, second alone)."""
    n = only_first + only_second
    if n == 0:
        return 1.0
    k = min(only_first, only_second)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def bootstrap_mean_diff(pairs: list[tuple[float, float]], resamples: int = 2000,
                        seed: int = 7) -> tuple[float, float, float] | None:
    """Mean of (b - a) over paired observations with its 95% percentile bootstrap interval."""
    return bootstrap(pairs, lambda sample: sum(b - a for a, b in sample) / len(sample), resamples, seed)


def bootstrap(pairs: list[tuple[float, float]], statistic: Callable[[list[tuple[float, float]]], float],
              resamples: int = 2000, seed: int = 7) -> tuple[float, float, float] | None:
    """(statistic, 95% low, 95% high), resampling the pairs with replacement; None for no pairs."""
    if not pairs:
        return None
    rng = random.Random(seed)
    values = sorted(statistic([pairs[rng.randrange(len(pairs))] for _ in pairs]) for _ in range(resamples))
    return (statistic(pairs), values[int(0.025 * resamples)], values[int(0.975 * resamples) - 1])


def sigmoid(z: float) -> float:
    """The logistic function, its argument clamped so that exp() cannot overflow."""
    return 1 / (1 + math.exp(-max(-50.0, min(50.0, z))))
