"""Anthropic's messages API with tool use."""

from __future__ import annotations

import os
from typing import Any

import anthropic

from tether.models.base import (
    Message,
    ModelError,
    ModelResponse,
    ToolCall,
    ToolSpec,
    TransientModelError,
    Usage,
    seconds_until,
)


def to_anthropic(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """(system prompt, messages) with tool results folded into user turns as Anthropic expects."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    converted: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        if role == "system":
            continue
        if role == "assistant":
            blocks: list[dict[str, Any]] = []
            if message.get("content"):
                blocks.append({"type": "text", "text": message["content"]})
            blocks += [{"type": "tool_use", "id": c["id"], "name": c["name"], "input": c["arguments"]}
                       for c in message.get("tool_calls") or []]
            converted.append({"role": "assistant", "content": blocks or [{"type": "text", "text": "."}]})
            continue
        block = ({"type": "tool_result", "tool_use_id": message["tool_call_id"], "content": message["content"]}
                 if role == "tool" else {"type": "text", "text": message["content"]})
        if converted and converted[-1]["role"] == "user":
            converted[-1]["content"].append(block)
        else:
            converted.append({"role": "user", "content": [block]})
    return system, converted


class AnthropicProvider:
    format_hint = None

    def __init__(self, model: str, base_url: str | None = None, timeout_s: float = 300):
        self.name = f"anthropic:{model}"
        self.model = model
        self.timeout_s = timeout_s
        api_key = os.environ.get("ANTHROPIC_API_KEY")
        if not api_key:
            raise ModelError("anthropic: set ANTHROPIC_API_KEY")
        self.client = anthropic.Anthropic(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s)

    def complete(self, messages: list[Message], tools: list[ToolSpec], max_output_tokens: int,
                 deadline: float | None = None) -> ModelResponse:
        system, converted = to_anthropic(messages)
        try:
            response = self.client.messages.create(
                model=self.model, system=system, messages=converted, max_tokens=max_output_tokens,
                tools=[{"name": t.name, "description": t.description, "input_schema": t.parameters}
                       for t in tools],
                timeout=seconds_until(deadline, self.timeout_s),
            )
        except anthropic.RateLimitError as exc:
            retry = exc.response.headers.get("retry-after")
            raise TransientModelError(f"anthropic: rate limited: {exc.message}",
                                      float(retry) if retry and retry.isdigit() else None) from exc
        except anthropic.APIStatusError as exc:
            if exc.status_code >= 500:
                raise TransientModelError(f"anthropic: server error {exc.status_code}: {exc.message}") from exc
            raise ModelError(f"anthropic: {exc.status_code}: {exc.message}") from exc
        except (anthropic.APITimeoutError, anthropic.APIConnectionError) as exc:
            raise TransientModelError(f"anthropic: {type(exc).__name__}: {exc}") from exc
        text = "".join(block.text for block in response.content if block.type == "text")
        calls = [ToolCall(id=b.id, name=b.name, arguments=b.input if isinstance(b.input, dict) else {})
                 for b in response.content if b.type == "tool_use"]
        usage = Usage(response.usage.input_tokens, response.usage.output_tokens)
        return ModelResponse(content=text, tool_calls=calls, usage=usage, model=response.model)

    def for_role(self, role: str) -> AnthropicProvider:
        return self  # the same model for every role

    def for_attempt(self, attempt: int) -> AnthropicProvider:
        return self  # the API takes no seed, and samples at temperature 1 unless told otherwise
