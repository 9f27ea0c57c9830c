"""An embedded GGUF model through llama.cpp, for machines with no network and no key.

The model is verified against its pinned sha256 before the first load. One llama.cpp instance is
kept per model file for the life of the process, and llama.cpp reuses the evaluated prefix of the
prompt, so each step reads only what the last step added. Replies use the text action format,
decoded under its grammar, so each reply is exactly one well-formed action (models/text_turns.py)."""

from __future__ import annotations

import atexit
import copy
import functools
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from tether.models import progress
from tether.models.actions import FORMAT_ERROR
from tether.models.base import Message, ModelError, ModelResponse, ToolSpec, Usage
from tether.models.catalog import resolve, verify
from tether.models.text_turns import text_turn

N_CTX = 8192
MAX_REPLY = 768  # tokens; a whole small file fits, a rambling essay does not
# What of the context a prompt may take, in characters: code and test output run about 3 characters
# a token for Qwen's tokenizer, and the reply needs its room.
MAX_PROMPT_CHARS = (N_CTX - MAX_REPLY) * 3
# Prompt tokens evaluated between two looks at the deadline: about 3.5 s on two cores, where 6,600 took
# 179 s (llama.cpp's own batch of 512 would be 14 s).
PREFILL_STEP = 128
CUT_AT_DEADLINE = "[the reply was cut off: the run's wall-time budget ended]"
_LOADED: dict[Path, Any] = {}
_GRAMMARS: dict[str, Any] = {}


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


def _grammar(text: str) -> Any:
    if text not in _GRAMMARS:
        from llama_cpp import LlamaGrammar
        _GRAMMARS[text] = LlamaGrammar.from_string(text, verbose=False)
    return _GRAMMARS[text]


@functools.cache
def _formatter(llm: Any) -> Any:
    """The chat template llama.cpp's own handler renders the prompt with (the model's, from its
    metadata), so that the prompt can be evaluated ahead of the reply."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    def text(token: int) -> str:
        return llm.detokenize([token], special=True).decode("utf-8", "replace") if token != -1 else ""

    return Jinja2ChatFormatter(template=llm.metadata["tokenizer.chat_template"], eos_token=text(llm.token_eos()),
                               bos_token=text(llm.token_bos()), stop_token_ids=[llm.token_eos()])


def _prefill(llm: Any, rendered: list[dict[str, str]], deadline: float) -> tuple[bool, int]:
    """Evaluate the prompt's new tokens a few at a time, so that a long prompt ends at the deadline
    too: llama.cpp cannot be stopped inside its own prompt evaluation, which took 3 minutes for
    6,600 new tokens on a 2-core machine. Whether it was done before the deadline, and the prompt's
    tokens.
    The reply then finds the prompt evaluated, as it finds any prefix it shares with the last one."""
    if "tokenizer.chat_template" not in llm.metadata:
        return True, 0  # another chat format: llama.cpp evaluates the prompt itself
    formatted = _formatter(llm)(messages=rendered)
    tokens = llm.tokenize(formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True)
    if len(tokens) >= llm.n_ctx():
        return True, len(tokens)  # llama.cpp refuses it with its own message
    cached = llm.longest_token_prefix(llm.input_ids[:llm.n_tokens].tolist(), tokens)
    llm.n_tokens = min(cached, len(tokens) - 1)  # the last token is evaluated again: its logits start the reply
    for start in range(llm.n_tokens, len(tokens), PREFILL_STEP):
        if time.time() >= deadline:
            return False, len(tokens)
        llm.eval(tokens[start:start + PREFILL_STEP])
    return True, len(tokens)


class _Watch:
    """Called before each token is sampled: counts the prompt and the tokens sampled, and reports them
    for the live line; leaves the logits as they are. (It cannot stop the generation: llama.cpp calls
    it through ctypes, which swallows exceptions.)"""

    def __init__(self) -> None:
        self.prompt = 0
        self.sampled = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if not self.sampled:
            self.prompt = len(input_ids)
        self.sampled += 1
        progress.report(self.sampled)
        return scores


class LocalProvider:
    format_hint = FORMAT_ERROR

    def __init__(self, detail: str):
        self.name = f"local:{detail}"
        self.attempt = 0
        path, sha256, size = resolve(detail)
        if sha256 is not None:
            verify(path, sha256, size)  # refuse a file that is not the pinned model, before loading it
        self.llm = _load(path)

    def _generate(self, rendered: list[dict[str, str]], grammar: str | None, temperature: float,
                  seed: int, max_tokens: int, deadline: float | None) -> tuple[str, Usage]:
        """The reply, streamed so that it can be ended at the deadline (the run's wall-time budget):
        a reply cut there is no action, and the guard stops the run before anything else is asked."""
        watch = _Watch()
        parts: list[str] = []
        finish = None
        if deadline is not None:
            evaluated, prompt = _prefill(self.llm, rendered, deadline)
            if not evaluated:
                return CUT_AT_DEADLINE, Usage(prompt, 0)
        try:
            chunks = self.llm.create_chat_completion(
                messages=rendered, max_tokens=min(max_tokens, MAX_REPLY), temperature=temperature, seed=seed,
                grammar=_grammar(grammar) if grammar is not None else None, logits_processor=[watch], stream=True)
            for chunk in chunks:
                choice = chunk["choices"][0]
                parts.append(choice["delta"].get("content") or "")
                finish = choice.get("finish_reason") or finish
                if finish is None and deadline is not None and time.time() >= deadline:
                    chunks.close()
                    return CUT_AT_DEADLINE, Usage(watch.prompt, watch.sampled)
        except ValueError as exc:  # llama.cpp says so when the prompt outgrows the context
            raise ModelError(f"local model: {exc}") from exc
        # A reply that ended by itself sampled its end token too, which is no part of it.
        return "".join(parts), Usage(watch.prompt, watch.sampled - (finish == "stop"))

    def complete(self, messages: list[Message], tools: list[ToolSpec], max_output_tokens: int,
                 deadline: float | None = None) -> ModelResponse:
        generate = functools.partial(self._generate, max_tokens=max_output_tokens, deadline=deadline)
        response = text_turn(generate, messages, [tool.name for tool in tools], self.attempt, self.name,
                             MAX_PROMPT_CHARS, deadline)
        return replace(response, cost_usd=0.0)

    def for_role(self, role: str) -> LocalProvider:
        return self  # the same model for every role

    def for_attempt(self, attempt: int) -> LocalProvider:
        other = copy.copy(self)  # the same loaded model, already verified
        other.attempt = attempt
        return other
