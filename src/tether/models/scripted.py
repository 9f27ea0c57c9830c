"""A deterministic model for tests and demos: turns read from a JSON file, consumed in order.

The turn index is the number of assistant messages already in the conversation, so a run that is
continued (after an approval, or a crash) picks up at the right turn without hidden state.
A turn may name the role it is for ("planner", "executor" or "executor-2", "reviewer"): each role of
the orchestrated architecture reads its own turns, in order, plus those that name no role."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tether.models.base import Message, ModelError, ModelResponse, ToolCall, ToolSpec, Usage, estimate_tokens


class ScriptedCall(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ScriptedUsage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)


class ScriptedTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str | None = None
    attempt: int | None = Field(None, ge=0)  # the attempt whose turn this is; None: every attempt's
    content: str = ""
    tool_calls: list[ScriptedCall] = Field(default_factory=list)
    usage: ScriptedUsage | None = None
    cost_usd: float | None = Field(None, ge=0)


class ScriptExhausted(ModelError):
    pass


def load_script(path: Path) -> list[ScriptedTurn]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"cannot read scripted turns {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    if not isinstance(data, list):
        raise ModelError(f"{path}: expected a JSON list of turns, got {type(data).__name__}")
    turns = []
    for index, raw in enumerate(data):
        try:
            turns.append(ScriptedTurn.model_validate(raw))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ModelError(f"{path}: turn [{index}] {where}: {first['msg']}") from exc
    return turns


class ScriptedProvider:
    format_hint = None

    def __init__(self, path: Path, turns: list[ScriptedTurn] | None = None):
        self.name = f"scripted:{path}"
        self.path = path
        self.turns = load_script(path) if turns is None else turns

    def for_role(self, role: str) -> ScriptedProvider:
        kind = role.split("-")[0]
        return ScriptedProvider(self.path, [t for t in self.turns if t.role in (None, role, kind)])

    def for_attempt(self, attempt: int) -> ScriptedProvider:
        return ScriptedProvider(self.path, [t for t in self.turns if t.attempt in (None, attempt)])

    def complete(self, messages: list[Message], tools: list[ToolSpec], max_output_tokens: int,
                 deadline: float | None = None) -> ModelResponse:
        index = sum(1 for message in messages if message["role"] == "assistant")
        if index >= len(self.turns):
            raise ScriptExhausted(f"the scripted model ran out of turns after {len(self.turns)}")
        turn = self.turns[index]
        calls = [ToolCall(id=f"call_{index}_{n}", name=c.name, arguments=c.arguments)
                 for n, c in enumerate(turn.tool_calls)]
        if turn.usage is not None:
            usage = Usage(turn.usage.input_tokens, turn.usage.output_tokens)
        else:
            prompt = json.dumps(messages)
            reply = turn.content + json.dumps([c.as_dict() for c in calls])
            usage = Usage(estimate_tokens(prompt), estimate_tokens(reply), estimated=True)
        return ModelResponse(content=turn.content, tool_calls=calls, usage=usage, model="scripted",
                             cost_usd=turn.cost_usd if turn.cost_usd is not None else 0.0)
