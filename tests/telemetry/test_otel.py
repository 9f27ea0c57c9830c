"""Telemetry received by a real OTLP/HTTP endpoint (a loopback receiver decoding the protobuf with
opentelemetry-proto): a live run's spans and metrics in the GenAI conventions, nothing left unsent
when the run ends, and the same spans exported after the fact with the recorded timestamps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import CHECK, FIX, bash, call, script
from tether.ledger import Ledger

TETHER = [sys.executable, "-m", "tether"]
TURNS = [{**bash("echo hi"), "usage": {"input_tokens": 120, "output_tokens": 8}},
         bash("curl http://example.com"),
         {**call("write_file", path="raindrops.py", content=FIX), "usage": {"input_tokens": 150, "output_tokens": 60}},
         call("submit", summary="fixed")]


class Receiver:
    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.metrics: set[str] = set()

    def attributes(self, items: Any) -> dict[str, Any]:
        out = {}
        for item in items:
            value = item.value
            kind = value.WhichOneof("value")
            out[item.key] = getattr(value, kind) if kind else None
        return out

    def take(self, path: str, body: bytes) -> None:
        if path.endswith("/v1/traces"):
            request = ExportTraceServiceRequest.FromString(body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        self.spans.append({"name": span.name, "start": span.start_time_unix_nano,
                                           "end": span.end_time_unix_nano, "id": span.span_id.hex(),
                                           "parent": span.parent_span_id.hex(), **self.attributes(span.attributes)})
        elif path.endswith("/v1/metrics"):
            request = ExportMetricsServiceRequest.FromString(body)
            for resource in request.resource_metrics:
                for scope in resource.scope_metrics:
                    self.metrics |= {metric.name for metric in scope.metrics}


@pytest.fixture
def receiver() -> Iterator[tuple[str, Receiver]]:
    received = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.take(self.path, self.rfile.read(int(self.headers.get("content-length", 0))))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()


def by_name(spans: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [span for span in spans if span["name"].startswith(prefix)]


def test_a_live_run_is_exported_in_the_genai_conventions(repo: Path, tmp_path: Path, receiver):
    url, received = receiver
    (repo / "tether.toml").write_text(CHECK + '[commands]\ndeny = ["curl"]\n')
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": url, "OTEL_SEMCONV_STABILITY_OPT_IN":
           "gen_ai_latest_experimental", "OTEL_SERVICE_NAME": "tether-test"}
    ran = subprocess.run([*TETHER, "run", "fix", "--model", script(tmp_path / "t.json", TURNS), "--json"], cwd=repo,
                         capture_output=True, text=True, env=env)
    run_id = json.loads(ran.stdout)["run_id"]
    (agent,) = by_name(received.spans, "invoke_agent")
    assert agent["gen_ai.conversation.id"] == run_id and agent["tether.status"] == "succeeded"
    chats = by_name(received.spans, "chat ")
    assert len(chats) == 4 and all(c["parent"] == agent["id"] for c in chats)
    assert chats[0]["gen_ai.usage.input_tokens"] == 120 and chats[0]["gen_ai.usage.output_tokens"] == 8
    assert chats[0]["gen_ai.provider.name"] == "tether.scripted" and chats[0]["gen_ai.request.model"].startswith(
        "scripted:")
    tools = by_name(received.spans, "execute_tool ")
    assert [t["gen_ai.tool.name"] for t in tools] == ["bash", "bash", "write_file", "submit"]
    assert all(t["gen_ai.tool.call.id"] for t in tools)
    (guard,) = by_name(received.spans, "apply_guardrail")
    assert guard["gen_ai.guardrail.name"] == "commands.deny" and guard["tether.decision"] == "deny"
    assert guard["parent"] == tools[1]["id"]
    assert "gen_ai.output.messages" not in chats[0]  # content only when asked
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration", "tether.runs",
            "tether.denials"} <= received.metrics


def test_history_is_exported_after_the_fact_with_its_own_times(repo: Path, tmp_path: Path, receiver):
    url, received = receiver
    ran = subprocess.run([*TETHER, "run", "fix", "--model", script(tmp_path / "t.json", TURNS[2:]), "--json"],
                         cwd=repo, capture_output=True, text=True)
    run_id = json.loads(ran.stdout)["run_id"]
    assert received.spans == []  # nothing configured, nothing sent
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": url,
           "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}
    exported = subprocess.run([*TETHER, "export", "otel", run_id], cwd=repo, capture_output=True, text=True, env=env)
    assert exported.returncode == 0, exported.stderr
    ledger = Ledger(f"sqlite:///{repo / '.tether' / 'tether.db'}")
    events = ledger.events(run_id)
    ledger.close()
    (agent,) = by_name(received.spans, "invoke_agent")
    assert agent["start"] == int(events[0].ts * 1e9) and agent["end"] == int(events[-1].ts * 1e9)
    assert "gen_ai.output.messages" in by_name(received.spans, "chat ")[0]  # asked for
    refused = subprocess.run([*TETHER, "export", "otel"], cwd=repo, capture_output=True, text=True, env=env)
    assert refused.returncode == 2 and "name a RUN or give --since" in refused.stderr


def test_metrics_serve_answers_prometheus_scrapes_from_the_store(repo: Path, tmp_path: Path):
    import socket
    import time
    import urllib.request

    (repo / "tether.toml").write_text(CHECK + '[commands]\ndeny = ["curl"]\n')
    subprocess.run([*TETHER, "run", "fix", "--model", script(tmp_path / "t.json", TURNS), "--json"], cwd=repo,
                   capture_output=True, text=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    served = subprocess.Popen([*TETHER, "metrics", "serve", "--port", str(port)], cwd=repo,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 20
        while True:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                break
            except OSError:
                assert time.time() < deadline and served.poll() is None, "metrics serve did not start"
                time.sleep(0.2)
    finally:
        served.terminate()
        served.wait(timeout=10)
    assert 'tether_runs_total{status="succeeded"} 1.0' in text
    assert 'tether_denials_total{rule="commands.deny"} 1.0' in text and "tether_tokens_total" in text
