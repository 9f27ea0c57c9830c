"""Paired comparison of two configs on the same cells (task and repeat): the difference in hidden
pass rate with an exact McNemar test and a bootstrap interval, and the differences in tokens, USD
and latency per task with bootstrap intervals."""

from __future__ import annotations

from typing import Any

from tether.stats import bootstrap_mean_diff, mcnemar_exact


def _interval(found: tuple[float, float, float] | None) -> dict[str, float] | None:
    return None if found is None else {"diff": found[0], "low": found[1], "high": found[2]}


def compare_configs(rows: list[dict[str, Any]], first: str, second: str) -> dict[str, Any]:
    by_cell: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for row in rows:
        if row["config"] in (first, second):
            by_cell.setdefault((row["task"], row["repeat"]), {})[row["config"]] = row
    pairs = [(cell[first], cell[second]) for cell in by_cell.values() if first in cell and second in cell]
    only_first = sum(1 for a, b in pairs if a["passed_hidden"] and not b["passed_hidden"])
    only_second = sum(1 for a, b in pairs if b["passed_hidden"] and not a["passed_hidden"])

    def diff(field: str) -> dict[str, float] | None:
        return _interval(bootstrap_mean_diff([(float(a[field]), float(b[field])) for a, b in pairs]))

    return {
        "first": first, "second": second, "pairs": len(pairs),
        "both_passed": sum(1 for a, b in pairs if a["passed_hidden"] and b["passed_hidden"]),
        "only_first_passed": only_first, "only_second_passed": only_second,
        "mcnemar_p": mcnemar_exact(only_first, only_second),
        "pass_rate_diff": diff("passed_hidden"),  # second minus first
        "tokens_diff": diff("tokens"), "usd_diff": diff("usd"), "latency_diff_s": diff("latency_s"),
        "escaped_defects_diff": diff("escaped_defect"), "false_successes_diff": diff("false_success"),
        "rework_diff": diff("rework"),
    }
