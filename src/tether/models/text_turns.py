"""One turn of a model that answers in the text action format (models/actions.py) rather than with
native tool calls: the local models, and small models behind an OpenAI-compatible server
(`[agent] actions = "text"`). The conversation is rendered for the model's own chat template, the
reply decoded under the action grammar where the backend takes one, and parsed.

The first reply of a run's first attempt is greedy: the model's best guess. Every later reply is
sampled (a temperature, and a seed that differs by attempt, turn and draw), so a retry after a
failed check is not the same greedy reply again; a reply that repeats one of the conversation's
earlier actions word for word is drawn again, up to RESAMPLES times, before it is let through
(the repeat brake then counts it as no progress)."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any

from tether.models.actions import INSTRUCTIONS, MEMORY_INSTRUCTIONS, parse_action
from tether.models.base import Message, ModelResponse, ToolCall, Usage
from tether.models.grammar import action_grammar, file_grammar, named_file, remember_grammar
from tether.models.tools import SPECS

ACTIONS = tuple(spec.name for spec in SPECS)  # what a run offers when memory is off

OBSERVATION_HEAD = 600  # characters of a long observation kept from its start; the rest from its end,
OBSERVATION_CHARS = 3000  # where a test run says what failed
RETRY_TEMPERATURE = 0.7
RESAMPLES = 2

# (rendered messages, grammar or None, temperature, seed) -> (reply text, usage)
Generate = Callable[[list[dict[str, str]], str | None, float, int], tuple[str, Usage]]


def clip(text: str) -> str:
    if len(text) <= OBSERVATION_CHARS:
        return text
    tail = OBSERVATION_CHARS - OBSERVATION_HEAD
    return (f"{text[:OBSERVATION_HEAD]}\n[... {len(text) - OBSERVATION_CHARS} characters omitted ...]\n"
            f"{text[-tail:]}")


def instructions(tools: Collection[str]) -> str:
    """The action format, for the tools offered (none: no format)."""
    if not tools:
        return ""
    if set(tools) == {"remember"}:
        return MEMORY_INSTRUCTIONS
    return f"{INSTRUCTIONS}\n{MEMORY_INSTRUCTIONS}" if "remember" in tools else INSTRUCTIONS


def render(messages: list[Message], tools: Collection[str] = ACTIONS) -> list[dict[str, str]]:
    """Chat messages for the model's own template: the action format of the tools offered in the
    system prompt, its own replies verbatim, tool results as user turns."""
    rendered: list[dict[str, str]] = []
    told = instructions(tools)
    for message in messages:
        role = message["role"]
        if role == "system":
            content = f"{message['content']}\n\n{told}" if told else message["content"]
            rendered.append({"role": "system", "content": content})
        elif role == "tool":
            rendered.append({"role": "user", "content": f"Result:\n{clip(message['content'])}"})
        else:
            rendered.append({"role": role, "content": message.get("content") or ""})
    return rendered


def fit(rendered: list[dict[str, str]], max_chars: int | None) -> list[dict[str, str]]:
    """The conversation within `max_chars`: the system prompt and the task always, then as many of
    the latest turns as fit; the oldest reply-and-result pairs are left out, and the task says so.
    A model with a small context then goes on working instead of failing on an overlong prompt."""
    total = sum(len(m["content"]) for m in rendered)
    if max_chars is None or total <= max_chars:
        return rendered
    head, rest = rendered[:2], rendered[2:]
    dropped = 0
    while len(rest) > 1 and total > max_chars:
        total -= len(rest[0]["content"]) + len(rest[1]["content"])
        rest, dropped = rest[2:], dropped + 2
    if not dropped:
        return rendered
    note = f"\n\n[{dropped // 2} earlier replies and their results are left out to fit the model's context]"
    return [head[0], {**head[1], "content": head[1]["content"] + note}, *rest]


def reply_grammar(messages: list[Message], tools: Collection[str] = ACTIONS) -> str:
    """The grammar of the next reply: a note when that is all that is offered; on the first turn of a
    task that names the file to write, that file's whole content; otherwise any one action."""
    if set(tools) == {"remember"}:
        return remember_grammar()
    remember = "remember" in tools
    if any(message["role"] == "assistant" for message in messages):
        return action_grammar(remember)
    task = next((message.get("content") or "" for message in messages if message["role"] == "user"), "")
    path = named_file(task)
    return file_grammar(path) if path is not None else action_grammar(remember)


def sampling(attempt: int, turn: int, draw: int) -> tuple[float, int]:
    """(temperature, seed) of a reply: greedy for the very first, then sampled with a seed of its own."""
    if attempt == turn == draw == 0:
        return 0.0, 0
    return RETRY_TEMPERATURE, attempt * 10_000 + turn * 10 + draw


def earlier_actions(messages: list[Message]) -> list[tuple[str, dict[str, Any]]]:
    return [(call["name"], call["arguments"]) for message in messages if message["role"] == "assistant"
            for call in message.get("tool_calls") or []]


def text_turn(generate: Generate, messages: list[Message], tools: Collection[str], attempt: int, model: str,
              max_prompt_chars: int | None = None, deadline: float | None = None) -> ModelResponse:
    """Ask for one reply (one action of the `tools` offered, by name; none: plain text), drawn again
    while it repeats an earlier action and the `deadline` (the run's wall-time budget) has not passed;
    the conversation is cut to `max_prompt_chars` (see fit) for a model with a small context."""
    rendered = fit(render(messages, tools), max_prompt_chars)
    grammar = reply_grammar(messages, tools) if tools else None
    turn = sum(1 for message in messages if message["role"] == "assistant")
    seen = earlier_actions(messages)
    prompt_tokens = completion_tokens = 0
    text, action = "", None
    for draw in range(RESAMPLES + 1):
        temperature, seed = sampling(attempt, turn, draw)
        text, usage = generate(rendered, grammar, temperature, seed)
        prompt_tokens += usage.input_tokens
        completion_tokens += usage.output_tokens
        action = parse_action(text) if tools else None
        if action is None or action not in seen or (deadline is not None and time.time() >= deadline):
            break
    calls = [ToolCall(f"call_{turn}_0", action[0], action[1])] if action else []
    return ModelResponse(content=text, tool_calls=calls, model=model, usage=Usage(prompt_tokens, completion_tokens))
