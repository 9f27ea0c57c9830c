"""The statistics behind eval and backtest intervals and paired tests."""

from __future__ import annotations

import pytest

from tether.stats import bootstrap_mean_diff, mcnemar_exact, percentile


def test_mcnemar_exact_counts_only_discordant_pairs() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)  # 2 * (1/2)^6
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)


def test_percentile_interpolates_and_handles_no_values() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([10.0, 0.0, 5.0], 100) == 10.0


def test_bootstrap_interval_holds_the_paired_mean_and_is_reproducible() -> None:
    pairs = [(1.0, 3.0), (2.0, 3.0), (0.0, 4.0), (5.0, 5.0), (1.0, 2.0)]
    diff, low, high = bootstrap_mean_diff(pairs)
    assert diff == pytest.approx(1.6)
    assert low <= diff <= high and low >= 0.0
    assert bootstrap_mean_diff(pairs) == (diff, low, high)
    assert bootstrap_mean_diff([]) is None
    constant = bootstrap_mean_diff([(1.0, 2.0)] * 4)
    assert constant == (1.0, 1.0, 1.0)
