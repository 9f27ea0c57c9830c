"""The live view of a run: a line per tool step and per guard intervention, a live line while the
model answers."""

from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from tether.ledger import StoredEvent
from tether.ledger import events as ev
from tether.ledger.meters import Meters
from tether.models import progress
from tether.models.tools import summarize_call
from tether.render.text import failure_tail, short


class _Waiting:
    """The live line while a model call is in progress: seconds so far, tokens when streamed."""

    def __init__(self, step: int, model: str, generation: progress.Generation):
        self.step, self.model, self.generation = step, model, generation

    def __rich__(self) -> Text:
        tokens = self.generation.tokens
        told = f", {tokens:,} tokens" if tokens is not None else ""
        return Text(f"step {self.step:>3}  {self.model} is answering… {self.generation.seconds:.0f}s{told}",
                    style="dim")


class StepPrinter:
    """An EventSink printing one line per tool step and one per guard intervention, and on a
    terminal a live line while the model answers."""

    def __init__(self, console: Console, model: str = "the model"):
        self.console = console
        self.model = model
        self.calls: dict[str, tuple[str, str]] = {}
        self.notes: list[str] = []  # guard interventions, printed under the step they belong to
        self.live: Live | None = None

    def note(self, markup: str) -> None:
        self.notes.append(f"          {markup}")

    def flush(self) -> None:
        for line in self.notes:
            self.console.print(line, highlight=False)
        self.notes.clear()

    def __call__(self, event: StoredEvent, meters: Meters) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
            progress.end()
        data = event.data
        self.render(event.run_id, data, meters)
        if isinstance(data, ev.ModelRequest) and self.console.is_terminal:
            waiting = _Waiting(data.step, self.model, progress.begin())
            self.live = Live(waiting, console=self.console, transient=True, refresh_per_second=4)
            self.live.start()
        if isinstance(data, ev.ToolResult | ev.RunPaused | ev.RunFinished | ev.ModelResponse):
            self.flush()

    def render(self, run_id: str, data: ev.Payload, meters: Meters) -> None:
        if isinstance(data, ev.RunStarted):
            self.model = data.model or self.model
            self.console.print(f"[bold]run {run_id}[/] on {data.branch} from "
                               f"{(data.base_commit or '')[:10]} with {data.model}")
        elif isinstance(data, ev.ToolCall):
            self.calls[data.call_id] = (data.name, summarize_call(data.name, data.arguments))
        elif isinstance(data, ev.ToolResult):
            name, args = self.calls.get(data.call_id, ("?", ""))
            if not data.executed:
                outcome = Text("refused", style="yellow")
            elif data.ok:
                outcome = Text("ok", style="green")
            elif data.ok is None:  # another agent's tool: it does not say
                outcome = Text("done", style="green")
            else:
                outcome = Text(f"exit {data.exit_code}" if data.exit_code is not None else "failed", style="red")
            line = Text(f"step {data.step:>3}  {name:<10} {short(args, 48):<48} ")
            line.append_text(outcome)
            line.append(f"   {meters.tokens:,} tok  ${meters.usd:.4f}", style="dim")
            self.console.print(line, highlight=False)
        elif isinstance(data, ev.ModelResponse) and not data.tool_calls:
            self.console.print(f"step {data.step:>3}  [dim](no tool call) {escape(short(data.content, 60))}[/]")
        elif isinstance(data, ev.PolicyDecision) and data.verdict != "allow":
            style = {"deny": "yellow", "ask": "cyan", "stop": "red"}[data.verdict]
            self.note(f"[{style}]↳ {data.verdict} {data.rule}: {escape(data.reason)}[/]")
        elif isinstance(data, ev.Brake):
            self.note(f"[red]↳ brake {data.detector}: {escape(data.reason)}[/]")
        elif isinstance(data, ev.AttemptEnded) and not data.rule.startswith("research."):
            self.note(f"[yellow]↳ attempt {data.attempt + 1} ended ({data.rule}); the next starts from the base[/]")
        elif isinstance(data, ev.MetricMeasured):
            self.note(f"metric {'on the base' if data.iteration == 0 else f'of proposal {data.iteration}'}: "
                      f"{data.median:g} (values {', '.join(f'{v:g}' for v in data.values)})")
        elif isinstance(data, ev.ResearchIteration):
            style = "green" if data.kept else "yellow"
            self.note(f"[{style}]↳ proposal {data.iteration} {'kept' if data.kept else 'reverted'}: "
                      f"{escape(data.reason)}[/]")
        elif isinstance(data, ev.ModelError):
            retry = f"; retry in {data.retry_in_s:g}s" if data.retry_in_s else ""
            self.note(f"[yellow]↳ model error (attempt {data.attempt}): {escape(short(data.error, 80))}{retry}[/]")
        elif isinstance(data, ev.CheckFinished):
            verdict = "[green]passed[/]" if data.passed else f"[red]failed (exit {data.exit_code})[/]"
            self.note(f"check {data.name}: {verdict}")
            if not data.passed:
                for line in failure_tail(data.output_tail).splitlines():
                    self.note(f"  [dim]{escape(line)}[/]")
        elif isinstance(data, ev.ApprovalRequested):
            self.note(f"[cyan]↳ approval needed from {', '.join(data.owners)}: {escape(data.action)}[/]")
