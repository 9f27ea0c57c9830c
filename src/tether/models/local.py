"""An embedded GGUF model through llama.cpp, for machines with no network and no key.

The model is verified against its pinned sha256 before the first load. One llama.cpp instance is
kept per model file for the life of the process, and llama.cpp reuses the evaluated prefix of the
prompt, so each step reads only what the last step added. Replies use the text action format."""

from __future__ import annotations

import atexit
import os
from pathlib import Path
from typing import Any

from tether.models import progress
from tether.models.actions import FORMAT_ERROR, INSTRUCTIONS, parse_action
from tether.models.base import Message, ModelError, ModelResponse, ToolCall, ToolSpec, Usage
from tether.models.catalog import resolve, verify

N_CTX = 8192
MAX_REPLY = 768  # tokens; a whole small file fits, a rambling essay does not
OBSERVATION_CHARS = 3000
_LOADED: dict[Path, Any] = {}


@atexit.register
def _close_all() -> None:
    """Free the models while the interpreter is whole; llama.cpp's finalizers fail at shutdown."""
    while _LOADED:
        _LOADED.popitem()[1].close()


def _load(path: Path) -> Any:
    if path not in _LOADED:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ModelError("the local provider needs llama.cpp: pip install 'tether[local]'") from exc
        threads = os.cpu_count() or 1  # llama-cpp-python's default is half the cores
        _LOADED[path] = Llama(model_path=str(path), n_ctx=N_CTX, n_threads=threads, n_threads_batch=threads,
                              seed=0, verbose=False)
    return _LOADED[path]


def _clip(text: str) -> str:
    if len(text) <= OBSERVATION_CHARS:
        return text
    half = OBSERVATION_CHARS // 2
    return f"{text[:half]}\n[... {len(text) - OBSERVATION_CHARS} characters omitted ...]\n{text[-half:]}"


def render(messages: list[Message], actions: bool = True) -> list[dict[str, str]]:
    """Chat messages for the model's own template: the action format in the system prompt (when the
    caller offers tools), its own replies verbatim, tool results as user turns."""
    rendered: list[dict[str, str]] = []
    for message in messages:
        role = message["role"]
        if role == "system":
            content = f"{message['content']}\n\n{INSTRUCTIONS}" if actions else message["content"]
            rendered.append({"role": "system", "content": content})
        elif role == "tool":
            rendered.append({"role": "user", "content": f"Result:\n{_clip(message['content'])}"})
        else:
            rendered.append({"role": role, "content": message.get("content") or ""})
    return rendered


class _TokenCounter:
    """Reports the tokens generated so far (for the live line); leaves the logits as they are."""

    def __init__(self) -> None:
        self.prompt: int | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.prompt is None:
            self.prompt = len(input_ids)
        progress.report(len(input_ids) - self.prompt)
        return scores


class LocalProvider:
    format_hint = FORMAT_ERROR

    def __init__(self, detail: str):
        self.name = f"local:{detail}"
        path, sha256, size = resolve(detail)
        if sha256 is not None:
            verify(path, sha256, size)  # refuse a file that is not the pinned model, before loading it
        self.llm = _load(path)

    def complete(self, messages: list[Message], tools: list[ToolSpec], max_output_tokens: int) -> ModelResponse:
        rendered = render(messages, actions=bool(tools))
        try:
            out = self.llm.create_chat_completion(messages=rendered, max_tokens=min(max_output_tokens, MAX_REPLY),
                                                  temperature=0.0, logits_processor=[_TokenCounter()])
        except ValueError as exc:  # llama.cpp says so when the prompt outgrows the context
            raise ModelError(f"local model: {exc}") from exc
        text = out["choices"][0]["message"].get("content") or ""
        action = parse_action(text) if tools else None
        turn = sum(1 for message in messages if message["role"] == "assistant")
        calls = [ToolCall(f"call_{turn}_0", action[0], action[1])] if action else []
        usage = out.get("usage") or {}
        return ModelResponse(content=text, tool_calls=calls, model=self.name, cost_usd=0.0,
                             usage=Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))))

    def for_role(self, role: str) -> LocalProvider:
        return self  # the same model for every role
