"""Where telemetry goes: OTLP over HTTP/protobuf, configured by the standard OTEL_* variables
(OTEL_EXPORTER_OTLP_ENDPOINT, ..._TRACES_ENDPOINT, ..._METRICS_ENDPOINT, ..._HEADERS,
OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES). Live: every event a run writes is projected as it is
written, and what is batched is flushed when the run ends or pauses, and at exit. After the fact:
`export_runs` replays stored logs into spans with their recorded timestamps."""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tether.ledger import Ledger, StoredEvent
from tether.ledger import events as ev
from tether.ledger.meters import Meters
from tether.telemetry.metrics import RunMetrics
from tether.telemetry.spans import SpanBuilder

ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def configured() -> bool:
    """Whether this process exports telemetry: an OTLP endpoint is named, or OTEL_TRACES_EXPORTER=otlp."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return any(os.environ.get(name) for name in ENDPOINTS) or os.environ.get("OTEL_TRACES_EXPORTER") == "otlp"


class Telemetry:
    """The providers of one process, exporting to OTLP/HTTP; `builder` projects one run's events."""

    def __init__(self) -> None:
        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "tether"})
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self.reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=60_000)
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[self.reader])
        self.metrics = RunMetrics(self.meter_provider.get_meter("tether"))
        self.tracer = self.tracer_provider.get_tracer("tether")
        self.lock = threading.Lock()
        self.closed = False

    def builder(self) -> SpanBuilder:
        return SpanBuilder(self.tracer)

    def flush(self) -> None:
        self.tracer_provider.force_flush()
        self.meter_provider.force_flush()

    def shutdown(self) -> None:
        if not self.closed:
            self.closed = True
            self.tracer_provider.shutdown()
            self.meter_provider.shutdown()


_live: Telemetry | None = None
_live_lock = threading.Lock()


def live() -> Telemetry | None:
    """This process's exporter when the OTEL_* variables ask for one (made once, shut down at exit,
    so a worker that stops leaves nothing unsent)."""
    global _live
    if not configured():
        return None
    with _live_lock:
        if _live is None:
            _live = Telemetry()
            atexit.register(_live.shutdown)
        return _live


def live_sink(sink: Any = None) -> Any:
    """An event sink (for RunLog.on_event) that projects each event as it is written, after `sink`;
    the sink itself when telemetry is not configured."""
    telemetry = live()
    if telemetry is None:
        return sink
    builder = telemetry.builder()

    def project(event: StoredEvent, meters: Meters) -> None:
        if sink is not None:
            sink(event, meters)
        with telemetry.lock:
            builder.feed(event)
            telemetry.metrics.feed(event, builder.model)
            if isinstance(event.data, ev.RunFinished | ev.RunPaused):
                telemetry.flush()

    return project


def export_runs(ledger: Ledger, run_ids: list[str], telemetry: Telemetry | None = None) -> int:
    """Replay stored logs into spans and metrics with their recorded timestamps; the events exported."""
    telemetry = telemetry or Telemetry()
    exported = 0
    for run_id in run_ids:
        builder = telemetry.builder()
        for event in ledger.events(run_id):
            builder.feed(event)
            telemetry.metrics.feed(event, builder.model)
            exported += 1
    telemetry.flush()
    return exported
