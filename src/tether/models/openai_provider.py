"""Any OpenAI-compatible chat-completions server (OpenAI, vLLM, Ollama, llama.cpp server)."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import replace
from typing import Any

import openai

from tether.models.actions import FORMAT_ERROR, parse_json_call
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
from tether.models.text_turns import text_turn


def to_openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    converted = []
    for message in messages:
        if message["role"] == "assistant" and message.get("tool_calls"):
            converted.append({
                "role": "assistant",
                "content": message.get("content") or None,
                "tool_calls": [
                    {"id": call["id"], "type": "function",
                     "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])}}
                    for call in message["tool_calls"]
                ],
            })
        elif message["role"] == "tool":
            converted.append({"role": "tool", "tool_call_id": message["tool_call_id"],
                              "content": message["content"]})
        else:
            converted.append({"role": message["role"], "content": message["content"]})
    return converted


def parse_arguments(raw: str | None) -> dict[str, Any]:
    """Arguments the model sent; malformed JSON is kept for the tool layer to refuse clearly."""
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError as exc:
        return {"_invalid_arguments": f"{exc.msg} at column {exc.colno}: {raw!r}"}
    return value if isinstance(value, dict) else {"_invalid_arguments": f"not a JSON object: {raw!r}"}


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class OpenAIProvider:
    """Native tool calls, or (`text_actions`, for small models behind a llama.cpp server) the text
    action format, its grammar sent in the request as llama.cpp's servers take it (`grammar`)."""

    def __init__(self, model: str, base_url: str | None = None, timeout_s: float = 300, text_actions: bool = False):
        self.name = f"openai:{model}"
        self.model = model
        self.text_actions = text_actions
        self.format_hint = FORMAT_ERROR if text_actions else None
        self.attempt = 0
        self.timeout_s = timeout_s
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        api_key = os.environ.get("OPENAI_API_KEY") or ("unused" if base_url else None)
        if api_key is None:
            raise ModelError("openai: set OPENAI_API_KEY, or --base-url for a server that needs no key")
        # Retries are Tether's, so each one is recorded as an event.
        self.client = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s)

    def _create(self, **request: Any) -> Any:
        try:
            response = self.client.chat.completions.create(model=self.model, **request)
        except openai.RateLimitError as exc:
            raise TransientModelError(f"openai: rate limited: {exc.message}", _retry_after(exc)) from exc
        except openai.APIStatusError as exc:
            if exc.status_code >= 500:
                raise TransientModelError(f"openai: server error {exc.status_code}: {exc.message}",
                                          _retry_after(exc)) from exc
            raise ModelError(f"openai: {exc.status_code}: {exc.message}") from exc
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            raise TransientModelError(f"openai: {type(exc).__name__}: {exc}") from exc
        if not response.choices:
            raise TransientModelError("openai: the response had no choices")
        return response

    def complete(self, messages: list[Message], tools: list[ToolSpec], max_output_tokens: int,
                 deadline: float | None = None) -> ModelResponse:
        if self.text_actions:
            return self._text_turn(messages, tools, max_output_tokens, deadline)
        response = self._create(
            timeout=seconds_until(deadline, self.timeout_s),
            messages=to_openai_messages(messages),
            tools=[{"type": "function", "function": {"name": t.name, "description": t.description,
                                                     "parameters": t.parameters}} for t in tools],
            max_tokens=max_output_tokens,
            # the first attempt asks as a run without attempts would; later ones with a seed of their own
            **({"seed": self.attempt} if self.attempt else {}),
        )
        message = response.choices[0].message
        calls = [
            ToolCall(id=call.id, name=call.function.name, arguments=parse_arguments(call.function.arguments))
            for call in message.tool_calls or []
        ]
        if not calls and message.content:
            # Servers for small local models (llama.cpp) may return the model's <tool_call> JSON as text.
            action = parse_json_call(message.content)
            if action is not None:
                turn = sum(1 for m in messages if m["role"] == "assistant")
                calls = [ToolCall(id=f"call_text_{turn}", name=action[0], arguments=action[1])]
        return ModelResponse(content=message.content or "", tool_calls=calls, usage=_usage(response),
                             model=response.model or self.model)

    def _text_turn(self, messages: list[Message], tools: list[ToolSpec], max_output_tokens: int,
                   deadline: float | None) -> ModelResponse:
        served: list[str] = []

        def generate(rendered: list[dict[str, str]], grammar: str | None, temperature: float,
                     seed: int) -> tuple[str, Usage]:
            response = self._create(messages=rendered, max_tokens=max_output_tokens, temperature=temperature,
                                    seed=seed, extra_body={"grammar": grammar} if grammar is not None else None,
                                    timeout=seconds_until(deadline, self.timeout_s))
            served.append(response.model or self.model)
            return response.choices[0].message.content or "", _usage(response)

        reply = text_turn(generate, messages, [tool.name for tool in tools], self.attempt, self.model,
                          deadline=deadline)
        return replace(reply, model=served[-1])

    def for_role(self, role: str) -> OpenAIProvider:
        return self  # the same model for every role

    def for_attempt(self, attempt: int) -> OpenAIProvider:
        other = copy.copy(self)
        other.attempt = attempt
        return other


def _usage(response: Any) -> Usage:
    return Usage(response.usage.prompt_tokens, response.usage.completion_tokens) if response.usage else Usage()
