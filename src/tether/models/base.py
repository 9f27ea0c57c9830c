"""The provider interface: messages and tool schemas in; text, tool calls and token usage out."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from tether.errors import TetherError

# A message is a plain dict in OpenAI chat shape, which every provider converts from:
# {"role": "system"|"user"|"assistant"|"tool", "content": str,
#  "tool_calls": [ToolCall.as_dict()...] (assistant), "tool_call_id": str (tool)}
Message = dict[str, Any]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class ModelResponse:
    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    cost_usd: float | None = None  # set by providers that know their exact cost


class Provider(Protocol):
    name: str  # the spec that built it, e.g. "openai:gpt-4o-mini"
    # What to tell the model when its reply had no action Tether could read (a provider with its own
    # text action format explains the format); None: the agent's own nudge.
    format_hint: str | None

    def complete(self, messages: list[Message], tools: list[ToolSpec], max_output_tokens: int,
                 deadline: float | None = None) -> ModelResponse:
        """`deadline` (a time.time() instant, None: none) is when the run's wall-time budget ends: a
        request waits no longer, and a local generation stops there."""
        ...

    def for_role(self, role: str) -> Provider:
        """The provider one role of a multi-role architecture talks to (a script or a recording
        gives each role its own turns; a real model is the same for every role)."""
        ...

    def for_attempt(self, attempt: int) -> Provider:
        """The provider an independent attempt (`[agent] attempts`) talks to: one that samples with a
        seed of its own where the model takes one, the attempt's turns of a script or a recording."""
        ...


class ModelError(TetherError):
    """A model call that failed for good (bad key, bad request, script exhausted)."""


class TransientModelError(ModelError):
    """Worth retrying: rate limit, 5xx, timeout, connection reset."""

    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


def seconds_until(deadline: float | None, default: float) -> float:
    """A request's timeout: `default`, or less when the deadline comes sooner (a second at least)."""
    return default if deadline is None else max(1.0, min(default, deadline - time.time()))


def estimate_tokens(text: str) -> int:
    """About four characters a token: only for budgets before a call and scripts without usage."""
    return max(1, len(text) // 4)
