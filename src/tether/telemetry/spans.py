"""A run's events as OpenTelemetry spans, in the GenAI semantic conventions (status "Development";
opt in with OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental):

    invoke_agent {agent}        the run: gen_ai.conversation.id (the run id), gen_ai.agent.name
      chat {model}              a model call: provider, request and response model, usage
      execute_tool {tool}       a tool call: gen_ai.tool.name, gen_ai.tool.call.id
      apply_guardrail {rule}    a guard decision: gen_ai.guardrail.name, tether.decision

The installed semantic-conventions package (0.66b2) defines no guardrail attribute; the GenAI
security work uses `apply_guardrail` spans (gen_ai.operation.name = "apply_guardrail",
gen_ai.guardrail.name), which Tether follows, with its own `tether.*` attributes for the verdict,
the rule and the reason. Spans carry the events' own timestamps, so the same projection serves a
live run and a history exported after the fact. Prompt and output content are exported only when
OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true, and then as recorded (masked)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from tether.ledger import StoredEvent
from tether.ledger import events as ev

CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


def _ns(ts: float) -> int:
    return int(ts * 1e9)


def provider_of(model: str) -> str:
    """gen_ai.provider.name of a model spec (openai:gpt-4o -> openai; local: -> tether.local)."""
    scheme = model.split(":", 1)[0] if ":" in model else "unknown"
    return {"openai": "openai", "anthropic": "anthropic", "local": "tether.local",
            "scripted": "tether.scripted"}.get(scheme, scheme)


@dataclass
class SpanBuilder:
    """Fed a run's events in order (live, or read back), it makes the run's spans."""
    tracer: Tracer
    capture_content: bool = field(default_factory=lambda: os.environ.get(CAPTURE_CONTENT, "").lower() == "true")
    run: Span | None = None
    run_id: str = ""
    model: str = ""
    agent: str = ""
    chats: dict[int, Span] = field(default_factory=dict)  # step -> its open chat span
    tools: dict[str, Span] = field(default_factory=dict)  # call id -> its open execute_tool span

    def feed(self, event: StoredEvent) -> None:
        data = event.data
        if isinstance(data, ev.RunStarted):
            self.run_id, self.model = event.run_id, data.model or ""
            self.agent = data.agent or data.architecture or "harness"
            self.run = self.tracer.start_span(
                f"invoke_agent {self.agent}", kind=SpanKind.INTERNAL, start_time=_ns(event.ts), attributes={
                    "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": self.agent,
                    "gen_ai.conversation.id": self.run_id, "gen_ai.provider.name": provider_of(self.model),
                    "gen_ai.request.model": self.model, "tether.run.id": self.run_id,
                    "tether.source": data.source, **({"tether.repo": data.repo} if data.repo else {})})
        elif isinstance(data, ev.RunContinued | ev.RunResumed) and self.run is None:
            self.run_id = self.run_id or event.run_id  # a segment after a pause, or in a new process
            self.run = self.tracer.start_span(
                f"invoke_agent {self.agent or 'agent'}", kind=SpanKind.INTERNAL, start_time=_ns(event.ts),
                attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": self.agent or "agent",
                            "gen_ai.conversation.id": self.run_id, "tether.run.id": self.run_id,
                            "tether.segment": data.type.value})
        elif self.run is None:
            return  # a log without its start (an event of another kind of log)
        elif isinstance(data, ev.ModelRequest):
            self.chats[data.step] = self._child(f"chat {self.model}", event.ts, SpanKind.CLIENT, {
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider_of(self.model),
                "gen_ai.request.model": self.model, "gen_ai.conversation.id": self.run_id})
        elif isinstance(data, ev.ModelResponse):
            span = self.chats.pop(data.step, None) or self._child(f"chat {self.model}", event.ts, SpanKind.CLIENT,
                                                                  {"gen_ai.operation.name": "chat"})
            span.set_attributes({"gen_ai.response.model": data.model or self.model,
                                 "gen_ai.usage.input_tokens": data.usage.input_tokens,
                                 "gen_ai.usage.output_tokens": data.usage.output_tokens,
                                 "tether.usd": data.cost_usd, "tether.step": data.step})
            if self.capture_content:
                span.set_attribute("gen_ai.output.messages", json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": data.content}]}]))
            span.end(end_time=_ns(event.ts))
        elif isinstance(data, ev.ModelError):
            span = self.chats.pop(data.step, None)
            if span is not None:
                span.set_status(Status(StatusCode.ERROR, data.error[:200]))
                span.set_attribute("error.type", "transient" if data.transient else "model_error")
                span.end(end_time=_ns(event.ts))
        elif isinstance(data, ev.ToolCall):
            attributes: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": data.name,
                                          "gen_ai.tool.call.id": data.call_id, "tether.step": data.step}
            if self.capture_content:
                attributes["gen_ai.tool.call.arguments"] = json.dumps(data.arguments)
            self.tools[data.call_id] = self._child(f"execute_tool {data.name}", event.ts, SpanKind.INTERNAL, attributes)
        elif isinstance(data, ev.ToolResult):
            span = self.tools.pop(data.call_id, None)
            if span is not None:
                span.set_attributes({"tether.executed": data.executed, "tether.changed_files": len(data.changed)})
                if data.exit_code is not None:
                    span.set_attribute("tether.exit_code", data.exit_code)
                if data.ok is False:
                    span.set_status(Status(StatusCode.ERROR))
                if self.capture_content:
                    span.set_attribute("gen_ai.tool.call.result", data.observation[:4000])
                span.end(end_time=_ns(event.ts))
        elif isinstance(data, ev.PolicyDecision | ev.Brake | ev.BrakeShadowed):
            self._guardrail(event, data)
        elif isinstance(data, ev.RunFinished | ev.RunPaused):
            self._close(event.ts, str(data.status), data.rule, data.reason)

    def _child(self, name: str, ts: float, kind: SpanKind, attributes: dict[str, Any]) -> Span:
        return self.tracer.start_span(name, context=trace.set_span_in_context(self.run), kind=kind,  # type: ignore[arg-type]
                                      start_time=_ns(ts), attributes=attributes)

    def _guardrail(self, event: StoredEvent, data: ev.PolicyDecision | ev.Brake | ev.BrakeShadowed) -> None:
        if isinstance(data, ev.PolicyDecision):
            verdict, rule, reason = data.verdict, data.rule, data.reason
        elif isinstance(data, ev.Brake):
            verdict, rule, reason = "stop", f"brakes.{data.detector}", data.reason
        else:
            verdict, rule, reason = "shadow", data.detector, data.reason
        parent = self.tools.get(data.call_id or "") or self.run
        span = self.tracer.start_span(
            f"apply_guardrail {rule}", context=trace.set_span_in_context(parent), kind=SpanKind.INTERNAL,  # type: ignore[arg-type]
            start_time=_ns(event.ts), attributes={
                "gen_ai.operation.name": "apply_guardrail", "gen_ai.guardrail.name": rule,
                "gen_ai.conversation.id": self.run_id, "tether.decision": verdict, "tether.rule": rule,
                "tether.reason": reason[:500], **({"gen_ai.tool.call.id": data.call_id} if data.call_id else {})})
        span.end(end_time=_ns(event.ts))

    def _close(self, ts: float, status: str, rule: str, reason: str) -> None:
        for span in [*self.chats.values(), *self.tools.values()]:
            span.end(end_time=_ns(ts))
        self.chats.clear()
        self.tools.clear()
        if self.run is not None:
            self.run.set_attributes({"tether.status": status, "tether.rule": rule, "tether.reason": reason[:500]})
            if status in ("failed",):
                self.run.set_status(Status(StatusCode.ERROR, reason[:200]))
            self.run.end(end_time=_ns(ts))
            self.run = None
