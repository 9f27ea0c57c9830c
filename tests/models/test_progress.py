"""The live line while a model answers: seconds so far, and tokens when the provider streams."""

from __future__ import annotations

import io
import time
from pathlib import Path

from rich.console import Console

from tests.conftest import call, parse_policy_text, script
from tether.ledger import Ledger
from tether.models import make_provider, progress
from tether.models.base import Message, ModelResponse, ToolSpec
from tether.render.steps import StepPrinter
from tether.runner import RunSpec, start_run


class SlowStreaming:
    """A scripted model that takes its time and reports tokens as a streaming provider does."""

    format_hint = None

    def __init__(self, model: str, streams: bool):
        self.inner = make_provider(model)
        self.name = self.inner.name
        self.streams = streams

    def complete(self, messages: list[Message], tools: list[ToolSpec], max_output_tokens: int,
                 deadline: float | None = None) -> ModelResponse:
        for tokens in (3, 17):
            if self.streams:
                progress.report(tokens)
            time.sleep(0.6)
        return self.inner.complete(messages, tools, max_output_tokens)

    def for_role(self, role: str) -> SlowStreaming:
        return self

    def for_attempt(self, attempt: int) -> SlowStreaming:
        return self


def _run(ledger: Ledger, repo: Path, tmp_path: Path, console: Console, streams: bool) -> str:
    model = script(tmp_path / "t.json", [call("submit", summary="nothing to do")])
    spec = RunSpec("x", repo, parse_policy_text(""), model=model)
    start_run(ledger, spec, on_event=StepPrinter(console), provider=SlowStreaming(model, streams))
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_a_terminal_sees_seconds_and_streamed_tokens(ledger: Ledger, repo: Path, tmp_path: Path):
    shown = _run(ledger, repo, tmp_path, Console(file=io.StringIO(), force_terminal=True, width=120), True)
    assert "is answering" in shown and "17 tokens" in shown
    assert "1s" in shown  # the seconds advance while it waits


def test_without_streaming_only_the_time_is_shown(ledger: Ledger, repo: Path, tmp_path: Path):
    shown = _run(ledger, repo, tmp_path, Console(file=io.StringIO(), force_terminal=True, width=120), False)
    assert "is answering" in shown and "tokens" not in shown


def test_a_pipe_gets_no_live_line(ledger: Ledger, repo: Path, tmp_path: Path):
    shown = _run(ledger, repo, tmp_path, Console(file=io.StringIO(), force_terminal=False, width=120), True)
    assert "is answering" not in shown and "run " in shown
