"""The store's runs as Prometheus metrics, read from the runs' summaries at each scrape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tether.ledger import Ledger


class StoreCollector(Collector):
    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def collect(self) -> Iterator[Metric]:
        runs = CounterMetricFamily("tether_runs", "Runs by status", labels=["status"])
        usd = CounterMetricFamily("tether_usd", "Money spent on model calls, USD")
        tokens = CounterMetricFamily("tether_tokens", "Tokens used")
        denials = CounterMetricFamily("tether_denials", "Guard denials and stops, by rule", labels=["rule"])
        stops = CounterMetricFamily("tether_brake_stops", "Runs stopped by a brake", labels=["detector"])
        shadowed = CounterMetricFamily("tether_brake_shadowed", "Brakes in shadow mode that would have stopped a "
                                       "run", labels=["detector"])
        interrupts = CounterMetricFamily("tether_interrupts", "Human interrupts")
        waiting = GaugeMetricFamily("tether_awaiting_approval", "Runs waiting for an approval now")
        by_status: dict[str, int] = {}
        totals: dict[str, float] = {"usd": 0.0, "tokens": 0, "interrupts": 0}
        rules: dict[str, int] = {}
        brakes: dict[str, int] = {}
        shadows: dict[str, int] = {}
        for row in self.ledger.list_runs(limit=None):
            by_status[row.status] = by_status.get(row.status, 0) + 1
            summary: dict[str, Any] = row.summary or {}
            usage = summary.get("usage") or {}
            totals["usd"] += float(usage.get("usd") or 0)
            totals["tokens"] += int(usage.get("tokens") or 0)
            totals["interrupts"] += int(summary.get("interrupts") or 0)
            for denial in summary.get("denials") or []:
                rules[denial["rule"]] = rules.get(denial["rule"], 0) + 1
            for brake in summary.get("brakes") or []:
                brakes[brake["detector"]] = brakes.get(brake["detector"], 0) + 1
            for shadow in summary.get("shadowed") or []:
                shadows[shadow["detector"]] = shadows.get(shadow["detector"], 0) + 1
        for status, count in sorted(by_status.items()):
            runs.add_metric([status], count)
        usd.add_metric([], totals["usd"])
        tokens.add_metric([], totals["tokens"])
        interrupts.add_metric([], totals["interrupts"])
        for rule, count in sorted(rules.items()):
            denials.add_metric([rule], count)
        for detector, count in sorted(brakes.items()):
            stops.add_metric([detector], count)
        for detector, count in sorted(shadows.items()):
            shadowed.add_metric([detector], count)
        waiting.add_metric([], by_status.get("awaiting_approval", 0))
        yield from (runs, usd, tokens, denials, stops, shadowed, interrupts, waiting)
