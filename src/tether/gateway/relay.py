"""The upstream's own API, for an agent that speaks it (Claude Code to an `anthropic:` upstream, Codex
or a Chat Completions client to an `openai:` one): the request goes on as the agent wrote it (its
images, thinking, cache markers, reasoning items, custom tools), with the upstream's model and the
gateway's key in place of the agent's; the reply comes back as the upstream wrote it, a stream as
it streams. Only what the record needs is read from it: the text, the tool calls, the usage.
Translation through Tether's own messages is for everything else (a local or scripted upstream,
or an agent of one API in front of a model of the other)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tether.gateway.agent_tools import HOSTED_NETWORK_TOOLS
from tether.gateway.wire import Wire, arguments_of
from tether.models import ModelResponse, Provider, ToolCall
from tether.models.base import Usage

ANTHROPIC_VERSION = "2023-06-01"
PATHS = {"anthropic": "/v1/messages", "chat": "/chat/completions", "responses": "/responses"}


@dataclass(frozen=True)
class Route:
    """Where the request goes as it is, with which headers (the real key among them), for which model."""
    url: str
    headers: dict[str, str]
    model: str


def route_for(provider: Provider, wire: Wire, client_headers: Mapping[str, str]) -> Route | None:
    """The upstream's endpoint for the agent's API, when the upstream speaks it; else None."""
    scheme = provider.name.partition(":")[0]
    client = getattr(provider, "client", None)
    model = getattr(provider, "model", None)
    if client is None or not isinstance(model, str):
        return None
    base = str(client.base_url).rstrip("/")
    if scheme == "anthropic" and wire == "anthropic":
        headers = {"x-api-key": client.api_key,
                   "anthropic-version": client_headers.get("anthropic-version") or ANTHROPIC_VERSION}
        if client_headers.get("anthropic-beta"):
            headers["anthropic-beta"] = client_headers["anthropic-beta"]
    elif scheme == "openai" and wire in ("chat", "responses"):
        headers = {"authorization": f"Bearer {client.api_key}"}
    else:
        return None
    return Route(base + PATHS[wire], {**headers, "content-type": "application/json"}, model)


def outgoing(body: dict[str, Any], route: Route, wire: Wire, network: bool) -> dict[str, Any]:
    """The agent's request for the upstream: its model, (a Chat Completions stream) usage asked for,
    and, unless the policy allows the network, none of the provider's hosted network tools."""
    sent = {**body, "model": route.model}
    if not network and isinstance(body.get("tools"), list):
        sent["tools"] = [tool for tool in body["tools"] if not (
            isinstance(tool, dict) and str(tool.get("type", "")).startswith(HOSTED_NETWORK_TOOLS))]
    if wire == "chat" and sent.get("stream") is True:
        sent["stream_options"] = {**(sent.get("stream_options") or {}), "include_usage": True}
    return sent


def read_reply(wire: Wire, body: Any) -> ModelResponse:
    """The text, tool calls and usage of a whole reply in the upstream's format (missing parts are empty)."""
    body = body if isinstance(body, dict) else {}
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    text: list[str] = []
    calls: list[ToolCall] = []
    if wire == "anthropic":
        for block in _dicts(body.get("content")):
            if block.get("type") == "text":
                text.append(str(block.get("text", "")))
            elif block.get("type") == "tool_use":
                calls.append(ToolCall(str(block.get("id", "")), str(block.get("name", "")),
                                      arguments_of(block.get("input"))))
        counted = _anthropic_usage(usage)
    elif wire == "responses":
        for item in _dicts(body.get("output")):
            if item.get("type") == "message":
                text += [str(part.get("text", "")) for part in _dicts(item.get("content"))
                         if part.get("type") == "output_text"]
            elif item.get("type") == "function_call":
                calls.append(ToolCall(str(item.get("call_id", "")), str(item.get("name", "")),
                                      arguments_of(item.get("arguments"))))
            elif item.get("type") == "custom_tool_call":  # a free-form tool (Codex's apply_patch for GPT-5)
                calls.append(ToolCall(str(item.get("call_id", "")), str(item.get("name", "")),
                                      {"input": str(item.get("input", ""))}))
        counted = Usage(_int(usage.get("input_tokens")), _int(usage.get("output_tokens")))
    else:
        choices = _dicts(body.get("choices"))
        message = choices[0].get("message") if choices and isinstance(choices[0].get("message"), dict) else {}
        text.append(str(message.get("content") or ""))
        for call in _dicts(message.get("tool_calls")):
            function = call.get("function") if isinstance(call.get("function"), dict) else {}
            calls.append(ToolCall(str(call.get("id", "")), str(function.get("name", "")),
                                  arguments_of(function.get("arguments"))))
        counted = Usage(_int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")))
    return ModelResponse("".join(text), calls, counted, str(body.get("model", "")))


@dataclass
class Tally:
    """A streamed reply read as it passes: fed the raw bytes, it gives the whole reply at the end
    (or what had come when the stream broke)."""
    wire: Wire
    buffer: bytes = b""
    text: list[str] = field(default_factory=list)
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)  # index -> id, name, arguments so far
    usage: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    final: dict[str, Any] | None = None  # the Responses API sends the whole reply at its end

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if line.startswith(b"data:"):
                try:
                    event = json.loads(line[5:].strip())
                except json.JSONDecodeError:
                    continue  # "[DONE]", or a line this reader has no use for
                if isinstance(event, dict):
                    self._event(event)

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if self.wire == "anthropic":
            if kind == "message_start" and isinstance(event.get("message"), dict):
                self.model = str(event["message"].get("model", ""))
                self.usage.update(event["message"].get("usage") or {})
            elif kind == "content_block_start" and isinstance(event.get("content_block"), dict):
                block = event["content_block"]
                if block.get("type") == "tool_use":
                    self.calls[_int(event.get("index"))] = {"id": block.get("id", ""), "name": block.get("name", ""),
                                                            "arguments": ""}
            elif kind == "content_block_delta" and isinstance(event.get("delta"), dict):
                delta = event["delta"]
                if delta.get("type") == "text_delta":
                    self.text.append(str(delta.get("text", "")))
                elif delta.get("type") == "input_json_delta" and _int(event.get("index")) in self.calls:
                    self.calls[_int(event.get("index"))]["arguments"] += str(delta.get("partial_json", ""))
            elif kind == "message_delta":
                self.usage.update(event.get("usage") or {})
        elif self.wire == "responses":
            if kind in ("response.completed", "response.incomplete") and isinstance(event.get("response"), dict):
                self.final = event["response"]
            elif kind == "response.output_text.delta":
                self.text.append(str(event.get("delta", "")))
        else:
            self.model = str(event.get("model", self.model))
            if isinstance(event.get("usage"), dict):
                self.usage = event["usage"]
            for choice in _dicts(event.get("choices")):
                delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
                self.text.append(str(delta.get("content") or ""))
                for call in _dicts(delta.get("tool_calls")):
                    slot = self.calls.setdefault(_int(call.get("index")), {"id": "", "name": "", "arguments": ""})
                    function = call.get("function") if isinstance(call.get("function"), dict) else {}
                    slot["id"] = call.get("id") or slot["id"]
                    slot["name"] += str(function.get("name") or "")
                    slot["arguments"] += str(function.get("arguments") or "")

    def reply(self) -> ModelResponse:
        if self.final is not None:
            return read_reply("responses", self.final)
        calls = [ToolCall(str(c["id"]), str(c["name"]), arguments_of(c["arguments"]))
                 for _, c in sorted(self.calls.items())]
        usage = _anthropic_usage(self.usage) if self.wire == "anthropic" else \
            Usage(_int(self.usage.get("prompt_tokens") or self.usage.get("input_tokens")),
                  _int(self.usage.get("completion_tokens") or self.usage.get("output_tokens")))
        return ModelResponse("".join(self.text), calls, usage, self.model)


def _anthropic_usage(usage: dict[str, Any]) -> Usage:
    """Cache writes and reads are input the upstream bills (at other rates): counted as input, so a
    budget errs on the side of stopping."""
    return Usage(_int(usage.get("input_tokens")) + _int(usage.get("cache_creation_input_tokens"))
                 + _int(usage.get("cache_read_input_tokens")), _int(usage.get("output_tokens")))


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
