"""The three wire formats agents speak, to and from Tether's own messages: the Anthropic Messages
API (Claude Code), the OpenAI Responses API (Codex) and OpenAI Chat Completions (most others).
Pure functions: a request body in, (messages, tools, max tokens) out; a response out as JSON or as
the server-sent events of a stream; errors in each format's own shape."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from tether.models import Message, ModelResponse, ToolCall, ToolSpec

Wire = Literal["anthropic", "responses", "chat"]
DEFAULT_MAX_TOKENS = 4096


class BadRequest(ValueError):
    """A request body the gateway cannot read; the message says what is wrong and where."""


@dataclass(frozen=True)
class Request:
    wire: Wire
    model: str
    messages: list[Message]
    tools: list[ToolSpec]
    max_tokens: int
    stream: bool


def _text(content: Any) -> str:
    """Text of a content field: a string, or a list of text parts (any of the three formats)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict)
                       and part.get("type") in ("text", "input_text", "output_text"))
    raise BadRequest(f"content must be a string or a list of parts, not {type(content).__name__}")


def _require(body: Any, key: str, kind: type, where: str) -> Any:
    if not isinstance(body, dict) or not isinstance(body.get(key), kind):
        raise BadRequest(f"{where}.{key}: expected {kind.__name__}")
    return body[key]


def _max_tokens(value: Any, where: str) -> int:
    if value is None:
        return DEFAULT_MAX_TOKENS
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequest(f"{where}: expected a positive integer")
    return value


def arguments_of(raw: Any) -> dict[str, Any]:
    """A tool call's arguments: an object as it is, or JSON text of one; anything else is marked invalid."""
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except (TypeError, json.JSONDecodeError):
        return {"_invalid_arguments": str(raw)}
    return value if isinstance(value, dict) else {"_invalid_arguments": str(raw)}


# requests ---------------------------------------------------------------------------------------

def parse(wire: Wire, body: Any) -> Request:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model") if isinstance(body.get("model"), str) else ""
    stream = body.get("stream") is True
    if wire == "anthropic":
        return Request(wire, model, _anthropic_messages(body), _tools(body, "anthropic"),
                       _max_tokens(body.get("max_tokens"), "max_tokens"), stream)
    if wire == "chat":
        return Request(wire, model, _chat_messages(body), _tools(body, "chat"),
                       _max_tokens(body.get("max_completion_tokens", body.get("max_tokens")), "max_tokens"), stream)
    return Request(wire, model, _responses_messages(body), _tools(body, "responses"),
                   _max_tokens(body.get("max_output_tokens"), "max_output_tokens"), stream)


def _tools(body: dict[str, Any], wire: Wire) -> list[ToolSpec]:
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise BadRequest("tools: expected a list")
    specs = []
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if wire == "chat":
            function = _require(tool, "function", dict, where)
            specs.append(ToolSpec(_require(function, "name", str, f"{where}.function"),
                                  function.get("description") or "", function.get("parameters") or {}))
        elif wire == "responses":
            if isinstance(tool, dict) and tool.get("type") not in (None, "function"):
                continue  # built-in tools (web search, ...) are the provider's, never offered upstream
            specs.append(ToolSpec(_require(tool, "name", str, where), tool.get("description") or "",
                                  tool.get("parameters") or {}))
        else:
            specs.append(ToolSpec(_require(tool, "name", str, where), tool.get("description") or "",
                                  tool.get("input_schema") or {}))
    return specs


def _anthropic_messages(body: dict[str, Any]) -> list[Message]:
    messages: list[Message] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": _text(system)})
    for index, message in enumerate(_require(body, "messages", list, "body")):
        role = _require(message, "role", str, f"messages[{index}]")
        content = message.get("content")
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
            continue
        if not isinstance(content, list):
            raise BadRequest(f"messages[{index}].content: expected a string or a list of blocks")
        text, calls = [], []
        for block in content:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                text.append(str(block.get("text", "")))
            elif kind == "tool_use":
                calls.append(ToolCall(str(block.get("id", "")), str(block.get("name", "")),
                                      block.get("input") if isinstance(block.get("input"), dict) else {}).as_dict())
            elif kind == "tool_result":
                result = block.get("content")
                messages.append({"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")),
                                 "content": result if isinstance(result, str) else _text(result)})
        if calls:
            messages.append({"role": "assistant", "content": "".join(text), "tool_calls": calls})
        elif text:
            messages.append({"role": role, "content": "".join(text)})
    return messages


def _chat_messages(body: dict[str, Any]) -> list[Message]:
    messages: list[Message] = []
    for index, message in enumerate(_require(body, "messages", list, "body")):
        role = _require(message, "role", str, f"messages[{index}]")
        if role == "developer":
            role = "system"
        if role == "tool":
            messages.append({"role": "tool", "tool_call_id": str(message.get("tool_call_id", "")),
                             "content": _text(message.get("content"))})
        elif role == "assistant" and message.get("tool_calls"):
            calls = [ToolCall(str(call.get("id", "")), str((call.get("function") or {}).get("name", "")),
                              arguments_of((call.get("function") or {}).get("arguments"))).as_dict()
                     for call in message["tool_calls"] if isinstance(call, dict)]
            messages.append({"role": "assistant", "content": _text(message.get("content")), "tool_calls": calls})
        else:
            messages.append({"role": role, "content": _text(message.get("content"))})
    return messages


def _responses_messages(body: dict[str, Any]) -> list[Message]:
    messages: list[Message] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": _text(body["instructions"])})
    items = body.get("input")
    if isinstance(items, str):
        return [*messages, {"role": "user", "content": items}]
    if not isinstance(items, list):
        raise BadRequest("input: expected a string or a list of items")
    for item in items:
        kind = item.get("type", "message") if isinstance(item, dict) else None
        if kind == "message":
            role = item.get("role") if item.get("role") in ("user", "assistant", "system") else "system"
            messages.append({"role": role, "content": _text(item.get("content"))})
        elif kind == "function_call":
            call = ToolCall(str(item.get("call_id", "")), str(item.get("name", "")),
                            arguments_of(item.get("arguments")))
            if messages and messages[-1]["role"] == "assistant" and "tool_calls" in messages[-1]:
                messages[-1]["tool_calls"].append(call.as_dict())
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call.as_dict()]})
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append({"role": "tool", "tool_call_id": str(item.get("call_id", "")),
                             "content": output if isinstance(output, str) else _text(output)})
    return messages


# responses --------------------------------------------------------------------------------------

def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def render(request: Request, response: ModelResponse) -> dict[str, Any]:
    """The whole (non-streamed) reply in the client's format."""
    usage = response.usage
    if request.wire == "anthropic":
        content: list[dict[str, Any]] = [{"type": "text", "text": response.content}] if response.content else []
        content += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in response.tool_calls]
        return {"id": _id("msg"), "type": "message", "role": "assistant", "model": request.model or response.model,
                "content": content, "stop_reason": "tool_use" if response.tool_calls else "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}}
    if request.wire == "chat":
        message: dict[str, Any] = {"role": "assistant", "content": response.content or None}
        if response.tool_calls:
            message["tool_calls"] = [{"id": c.id, "type": "function",
                                      "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                                     for c in response.tool_calls]
        return {"id": _id("chatcmpl"), "object": "chat.completion", "created": int(time.time()),
                "model": request.model or response.model,
                "choices": [{"index": 0, "message": message,
                             "finish_reason": "tool_calls" if response.tool_calls else "stop"}],
                "usage": {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
                          "total_tokens": usage.total}}
    output: list[dict[str, Any]] = []
    if response.content:
        output.append({"type": "message", "id": _id("msg"), "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": response.content, "annotations": []}]})
    output += [{"type": "function_call", "id": _id("fc"), "call_id": c.id, "name": c.name,
                "arguments": json.dumps(c.arguments), "status": "completed"} for c in response.tool_calls]
    return {"id": _id("resp"), "object": "response", "created_at": int(time.time()), "status": "completed",
            "model": request.model or response.model, "output": output,
            "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                      "total_tokens": usage.total}}


def _sse(event: str | None, data: dict[str, Any] | str) -> str:
    text = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "") + f"data: {text}\n\n"


def stream(request: Request, response: ModelResponse) -> Iterator[str]:
    """The reply as the server-sent events of the client's streaming format (one delta per block)."""
    whole = render(request, response)
    if request.wire == "anthropic":
        start = dict(whole, content=[], stop_reason=None, usage={"input_tokens": whole["usage"]["input_tokens"],
                                                                 "output_tokens": 0})
        yield _sse("message_start", {"type": "message_start", "message": start})
        for index, block in enumerate(whole["content"]):
            if block["type"] == "text":
                yield _sse("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": {"type": "text", "text": ""}})
                delta = {"type": "text_delta", "text": block["text"]}
            else:
                yield _sse("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": dict(block, input={})})
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            yield _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
        yield _sse("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": whole["stop_reason"], "stop_sequence": None},
                                     "usage": {"output_tokens": whole["usage"]["output_tokens"]}})
        yield _sse("message_stop", {"type": "message_stop"})
    elif request.wire == "chat":
        choice = whole["choices"][0]
        base = {"id": whole["id"], "object": "chat.completion.chunk", "created": whole["created"],
                "model": whole["model"]}
        delta: dict[str, Any] = {"role": "assistant", "content": choice["message"]["content"] or ""}
        if "tool_calls" in choice["message"]:
            delta["tool_calls"] = [dict(call, index=i) for i, call in enumerate(choice["message"]["tool_calls"])]
        yield _sse(None, dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": None}]))
        yield _sse(None, dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}],
                              usage=whole["usage"]))
        yield _sse(None, "[DONE]")
    else:
        sequence = 0

        def event(kind: str, **fields: Any) -> str:
            nonlocal sequence
            sequence += 1
            return _sse(kind, {"type": kind, "sequence_number": sequence, **fields})

        yield event("response.created", response=dict(whole, status="in_progress", output=[]))
        for index, item in enumerate(whole["output"]):
            yield event("response.output_item.added", output_index=index, item=item)
            yield event("response.output_item.done", output_index=index, item=item)
        yield event("response.completed", response=whole)


def refusal_status(wire: Wire, kind: str) -> int:
    """The status for a refusal of `kind` that the client shows and does not retry: measured with
    Claude Code 2.1.328 (a 400 it resent six times, a 403 it called an authentication failure; a
    402 it shows once) and Codex 0.169.0 (a 402 or 403 it retried five times; a 400 it shows once)."""
    if kind == "auth":
        return 401
    if kind == "upstream":
        return 502
    return 402 if wire == "anthropic" else 400


def error(wire: Wire, status: int, message: str) -> dict[str, Any]:
    """An error body in the client's own format, so the agent shows the message."""
    if wire == "anthropic":
        kind = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    kind = {400: "invalid_request_error", 401: "invalid_api_key", 403: "permission_denied",
            429: "rate_limit_exceeded"}.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}
