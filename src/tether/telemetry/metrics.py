"""Metrics of runs, from their events: the GenAI conventions' client metrics and Tether's own."""

from __future__ import annotations

from opentelemetry.metrics import Meter

from tether.ledger import StoredEvent
from tether.ledger import events as ev
from tether.telemetry.spans import provider_of


class RunMetrics:
    """gen_ai.client.token.usage and gen_ai.client.operation.duration (histograms, as the
    conventions define them), and tether.runs (by status), tether.stops (brake and budget stops by
    rule), tether.denials (by rule), tether.interrupts and tether.usd (counters)."""

    def __init__(self, meter: Meter):
        self.tokens = meter.create_histogram("gen_ai.client.token.usage", unit="{token}",
                                             description="Number of input and output tokens used")
        self.duration = meter.create_histogram("gen_ai.client.operation.duration", unit="s",
                                               description="GenAI operation duration")
        self.runs = meter.create_counter("tether.runs", unit="{run}", description="Runs ended, by status")
        self.stops = meter.create_counter("tether.stops", unit="{run}",
                                          description="Runs stopped by a brake or a budget")
        self.denials = meter.create_counter("tether.denials", unit="{decision}", description="Guard denials, by rule")
        self.interrupts = meter.create_counter("tether.interrupts", unit="{interrupt}",
                                               description="Human interrupts (approval requests)")
        self.usd = meter.create_counter("tether.usd", unit="USD", description="Money spent on model calls")

    def feed(self, event: StoredEvent, model: str) -> None:
        data = event.data
        if isinstance(data, ev.ModelResponse):
            common = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider_of(model),
                      "gen_ai.request.model": model, "gen_ai.response.model": data.model or model}
            self.tokens.record(data.usage.input_tokens, {**common, "gen_ai.token.type": "input"})
            self.tokens.record(data.usage.output_tokens, {**common, "gen_ai.token.type": "output"})
            self.duration.record(data.latency_s, common)
            self.usd.add(data.cost_usd, {"gen_ai.request.model": model})
        elif isinstance(data, ev.PolicyDecision) and data.verdict in ("deny", "stop"):
            self.denials.add(1, {"tether.rule": data.rule})
            if data.verdict == "stop" and data.rule.startswith("budget."):
                self.stops.add(1, {"tether.rule": data.rule})
        elif isinstance(data, ev.Brake):
            self.stops.add(1, {"tether.rule": f"brakes.{data.detector}"})
        elif isinstance(data, ev.ApprovalRequested):
            self.interrupts.add(1)
        elif isinstance(data, ev.RunFinished):
            self.runs.add(1, {"tether.status": str(data.status)})
