"""How runs look in a terminal: a line per step while running, a summary at the end."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from tether.backtest.engine import RunVerdict
from tether.backtest.engine import Summary as BacktestSummary
from tether.backtest.sweep import SweepResult
from tether.evals.report import fmt_interval, fmt_value
from tether.ledger import StoredEvent
from tether.ledger import events as ev
from tether.ledger.fleet import DayUsage, Switch
from tether.ledger.meters import Meters
from tether.models import progress
from tether.models.tools import summarize_call
from tether.policy.schema import FleetPolicy
from tether.queue.tasks import Task
from tether.replay import ReplayReport


def _short(value: str, width: int) -> str:
    value = " ".join(value.split())
    return value if len(value) <= width else value[: width - 1] + "…"


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
            else:
                outcome = Text(f"exit {data.exit_code}" if data.exit_code is not None else "failed", style="red")
            line = Text(f"step {data.step:>3}  {name:<10} {_short(args, 48):<48} ")
            line.append_text(outcome)
            line.append(f"   {meters.tokens:,} tok  ${meters.usd:.4f}", style="dim")
            self.console.print(line, highlight=False)
        elif isinstance(data, ev.ModelResponse) and not data.tool_calls:
            self.console.print(f"step {data.step:>3}  [dim](no tool call) {escape(_short(data.content, 60))}[/]")
        elif isinstance(data, ev.PolicyDecision) and data.verdict != "allow":
            style = {"deny": "yellow", "ask": "cyan", "stop": "red"}[data.verdict]
            self.note(f"[{style}]↳ {data.verdict} {data.rule}: {escape(data.reason)}[/]")
        elif isinstance(data, ev.Brake):
            self.note(f"[red]↳ brake {data.detector}: {escape(data.reason)}[/]")
        elif isinstance(data, ev.ModelError):
            retry = f"; retry in {data.retry_in_s:g}s" if data.retry_in_s else ""
            self.note(f"[yellow]↳ model error (attempt {data.attempt}): {escape(_short(data.error, 80))}{retry}[/]")
        elif isinstance(data, ev.CheckFinished):
            verdict = "[green]passed[/]" if data.passed else f"[red]failed (exit {data.exit_code})[/]"
            self.note(f"check {data.name}: {verdict}")
            if not data.passed:
                for line in failure_tail(data.output_tail).splitlines():
                    self.note(f"  [dim]{escape(line)}[/]")
        elif isinstance(data, ev.ApprovalRequested):
            self.note(f"[cyan]↳ approval needed from {', '.join(data.owners)}: {escape(data.action)}[/]")


STATUS_STYLE = {"succeeded": "bold green", "failed": "bold red", "stopped": "bold yellow",
                "awaiting_approval": "bold cyan", "running": "bold", "waiting": "yellow", "queued": "dim",
                "cancelled": "dim red"}


def print_summary(console: Console, summary: dict[str, Any], budget: dict[str, Any] | None = None) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim")
    table.add_column()
    table.add_row("status", Text(summary["status"], style=STATUS_STYLE.get(summary["status"], "")))
    table.add_row("reason", summary["reason"] or "-")
    table.add_row("branch", f"{summary['branch']}" + (f" @ {summary['commit'][:10]}" if summary["commit"] else ""))
    diff = summary["diffstat"]
    table.add_row("diff", f"{diff['files']} files, +{diff['added']} -{diff['removed']}")
    checks = ", ".join(f"{c['name']} {'passed' if c['passed'] else 'FAILED'}" for c in summary["checks"])
    table.add_row("checks", checks or "not run")
    for check in summary["checks"]:
        if not check["passed"] and check.get("output_tail"):
            table.add_row(f"  {check['name']} said", Text(failure_tail(check["output_tail"]), overflow="fold"))
    usage = summary["usage"]
    limits = budget or {}

    def of(value: str, limit_key: str) -> str:
        limit = limits.get(limit_key)
        return value + (f" / {limit:g}" if isinstance(limit, int | float) else "")

    table.add_row("budget", "  ".join([
        of(f"{usage['steps']} steps", "max_steps"),
        of(f"{usage['tool_calls']} tool calls", "max_tool_calls"),
        of(f"{usage['tokens']:,} tokens", "max_tokens"),
        of(f"${usage['usd']:.4f}", "max_usd"),
        of(f"{usage['wall_s']:.1f}s", "max_wall_s"),
    ]))
    if summary["approvals"]:
        table.add_row("approvals", "; ".join(
            f"{a['action']} → {a['decision']}" + (f" by {a['by']}" if a.get("by") else "")
            for a in summary["approvals"]))
    table.add_row("denials", str(len(summary["denials"])) + (
        " (" + ", ".join(sorted({d["rule"] for d in summary["denials"]})) + ")" if summary["denials"] else ""))
    table.add_row("brakes", "; ".join(f"{b['detector']}: {b['reason']}" for b in summary["brakes"]) or "none")
    table.add_row("interrupts", f"{summary['interrupts']} (approval requests, denials by people, manual stops)")
    if summary["rework"]:
        table.add_row("rework", f"{summary['rework']} failed submits before the end")
    console.print(table)


def print_events(console: Console, events: list[StoredEvent], full: bool = False) -> None:
    for event in events:
        if full:
            console.print(f"[dim]{event.seq:>4}[/] [bold]{event.type}[/]")
            console.print_json(event.payload_json)
        else:
            console.print(f"[dim]{event.seq:>4}[/] [bold]{event.type:<18}[/] {escape(_short(event.payload_json, 110))}")


FAILURE_LINES = 12


def failure_tail(output: str) -> str:
    """The last lines of a failing check's output: where test runners say what went wrong."""
    lines = [line for line in output.rstrip().splitlines() if line.strip()]
    return "\n".join(lines[-FAILURE_LINES:])


def print_replay(console: Console, report: ReplayReport) -> None:
    console.print(f"replay {report.replay_run_id} of {report.original_run_id} under {report.policy} policy: "
                  f"{report.steps_compared} steps compared, recorded {report.original_status}, "
                  f"replayed {report.replay_status}")
    if report.masked_outputs:
        console.print(f"[dim]{report.masked_outputs} outputs matched only after masking durations and addresses[/]")
    if report.identical:
        console.print("[bold green]identical[/]")
        return
    table = Table("step", "call", "tool", "field", "recorded", "replayed",
                  title="first divergence" if report.policy == "recorded" else "where the decisions differ")
    for d in report.divergences:
        table.add_row(str(d.step), d.call_id, d.tool, d.field, escape(str(d.recorded)), escape(str(d.replayed)))
    console.print(table)
    for d in report.divergences:
        if d.diff:
            console.print(f"[bold]output of step {d.step} ({d.call_id})[/]")
            console.print(escape(d.diff), highlight=False)


def _rate(count: int, total: int, interval: tuple[float, float]) -> str:
    share = count / total if total else 0.0
    return f"{count}/{total} = {share:.1%} ({interval[0]:.1%}–{interval[1]:.1%})"


def print_backtest(console: Console, verdicts: list[RunVerdict], overall: BacktestSummary,
                   by_source: dict[str, BacktestSummary], show_all: bool) -> None:
    listed = [v for v in verdicts if v.stopped or show_all]
    table = Table("run", "resolved", "stopped at", "rule", "USD at stop / total", "steps at stop / total",
                  title=f"{len([v for v in verdicts if v.stopped])} of {len(verdicts)} runs would have stopped")
    for v in listed:
        table.add_row(f"{v.instance_id} [dim]({v.source})[/]", {True: "yes", False: "no", None: "?"}[v.resolved],
                      f"step {v.stop_step}" if v.stopped else "-", v.rule or "-",
                      f"{v.cost_at_stop or 0:.2f} / {v.cost_usd:.2f}" if v.stopped else f"- / {v.cost_usd:.2f}",
                      f"{v.steps_at_stop} / {v.steps}" if v.stopped else f"- / {v.steps}")
    console.print(table)
    totals = Table("", "failed runs stopped", "USD saved on failed runs", "resolved runs stopped (false stops)",
                   "USD spent on killed resolved runs", title="overall (95% intervals: Wilson; bootstrap for USD)")
    for name, s in [*by_source.items(), ("all", overall)]:
        totals.add_row(name, _rate(s.unresolved_stopped, s.unresolved, s.unresolved_stopped_ci),
                       f"${s.saved_usd:.2f} of ${s.unresolved_usd:.2f} = {s.saved_share:.1%} "
                       f"({s.saved_share_ci[0]:.1%}–{s.saved_share_ci[1]:.1%})",
                       _rate(s.false_stops, s.resolved, s.false_stop_ci),
                       f"${s.resolved_usd_spent_before_kill:.2f} (of ${s.resolved_usd_of_killed:.2f})")
    console.print(totals)
    if overall.unlabelled:
        console.print(f"[dim]{overall.unlabelled} runs without a label are left out of the rates[/]")
    if overall.stops_by_rule:
        console.print("stops by rule: " + ", ".join(f"{rule} {n}" for rule, n in overall.stops_by_rule.items()))


def print_sweep(console: Console, result: SweepResult) -> None:
    console.print(f"fitted on {result.fit_runs} labelled runs, reported on {result.test_runs} held-out runs; "
                  f"{result.configs} configurations")
    table = Table("policy", "false stops fit", "saved fit", "false stops test", "saved test",
                  title="Pareto frontier (fit), measured on the held-out runs")
    for p in result.frontier:
        style = "bold red" if p is result.chosen else ""
        table.add_row(p.policy_toml().replace("\n", "  "), f"{p.fit['false_stop_rate']:.1%}",
                      f"{p.fit['saved_share']:.1%}", f"{p.test['false_stop_rate']:.1%}",
                      f"{p.test['saved_share']:.1%}", style=style)
    console.print(table)
    if result.chosen is None:
        console.print(f"no frontier policy keeps false stops under {result.target_false_stop_rate:.0%} on the fit runs")
    else:
        t = result.chosen.test
        console.print(f"[bold]chosen at ≤{result.target_false_stop_rate:.0%} false stops (fit):[/]\n"
                      f"{result.chosen.policy_toml()}\non held-out runs: saves {t['saved_share']:.1%} of failed "
                      f"runs' USD ({t['saved_share_ci'][0]:.1%}–{t['saved_share_ci'][1]:.1%}), stops "
                      f"{t['false_stops']}/{t['resolved']} resolved runs ({t['false_stop_ci'][0]:.1%}–"
                      f"{t['false_stop_ci'][1]:.1%})")


def print_tasks(console: Console, tasks: list[Task]) -> None:
    if not tasks:
        console.print("no tasks")
        return
    rows = [[task.id, Text(task.state, STATUS_STYLE.get(task.state, "")), str(task.attempts), str(task.priority),
             _short(task.repo, 30), _short(task.instruction, 40), _short(task.reason, 50)] for task in tasks]
    console.print(table_of(["task", "state", "attempts", "priority", "repository", "instruction", "reason"], rows,
                           ("task", "state", "attempts", "priority"), box=None, header_style="bold"))


def print_fleet(console: Console, limits: FleetPolicy, usage: list[DayUsage], switches: list[Switch]) -> None:
    org = next((u.usd for u in usage if u.scope == "org"), 0.0)
    usd_limit = f" of ${limits.max_usd_per_day:.2f}" if limits.max_usd_per_day else " (no limit)"
    console.print(f"today: ${org:.4f}{usd_limit} spent by the fleet")
    lines_limit = limits.max_lines_per_day_per_repo
    for row in usage:
        if row.scope.startswith("repo:"):
            of = f" of {lines_limit}" if lines_limit else ""
            console.print(f"  {row.scope[5:]}: {row.lines} changed lines{of}")
    if limits.max_concurrent_per_repo:
        console.print(f"at most {limits.max_concurrent_per_repo} concurrent run(s) per repository")
    console.print(f"over a limit, a run will {limits.on_limit}")
    for switch in switches:
        console.print(f"[bold red]brake on {switch.scope}[/] by {switch.by}: {escape(switch.reason)}")
    if not switches:
        console.print("no brakes on")


def print_eval(console: Console, results: dict[str, Any]) -> None:
    """One column per config (configs are few, metrics many), then the paired comparisons."""
    summary = results["summary"]
    table = Table(title=f"eval {results['eval_id']}: {len(results['rows'])} scored runs")
    table.add_column("metric")
    for name in summary:
        table.add_column(name, justify="right")

    def pass_rate(s: dict[str, Any]) -> str:
        low, high = s["pass_rate_ci"]
        return f"{s['pass_rate']:.0%} [{low:.0%}, {high:.0%}]"

    metrics: list[tuple[str, Any]] = [
        ("solved (hidden)", lambda s: f"{s['solved']}/{s['runs']}"), ("pass rate [95% CI]", pass_rate),
        ("visible pass rate", lambda s: f"{s['visible_pass_rate']:.0%}"),
        ("latency p50 / p95 s",
         lambda s: f"{fmt_value(s['latency_p50_s'], '.1f')} / {fmt_value(s['latency_p95_s'], '.1f')}"),
        ("tokens per task", lambda s: fmt_value(s["tokens_per_task"], ",.0f")),
        ("tokens per solved task", lambda s: fmt_value(s["tokens_per_solved"], ",.0f")),
        ("USD per task", lambda s: fmt_value(s["usd_per_task"], ".4f")),
        ("human interrupts", lambda s: str(s["interrupts"])),
        ("brake / budget stops", lambda s: f"{s['brake_stops']} / {s['budget_stops']}"),
        ("rework: check failures / lines", lambda s: f"{s['rework']} / {s['rework_lines']}"),
        ("escaped defects", lambda s: str(s["escaped_defects"])),
        ("false successes (of runs ended succeeded)", lambda s: f"{s['false_successes']} of {s['succeeded']}"),
        ("write-cap hits", lambda s: str(s["cap_hits"])),
    ]
    for label, cell in metrics:
        table.add_row(label, *(cell(s) for s in summary.values()))
    console.print(table)
    for c in results["comparisons"]:
        console.print(f"[bold]{escape(c['second'])} vs {escape(c['first'])}[/] on {c['pairs']} pairs: pass rate "
                      f"{fmt_interval(c['pass_rate_diff'], '+.0%')} (solved only by {escape(c['first'])}: "
                      f"{c['only_first_passed']}, only by {escape(c['second'])}: {c['only_second_passed']}, McNemar "
                      f"p={c['mcnemar_p']:.3f}); tokens {fmt_interval(c['tokens_diff'], '+,.0f')}; latency "
                      f"{fmt_interval(c['latency_diff_s'], '+.1f')} s; escaped defects "
                      f"{fmt_interval(c['escaped_defects_diff'], '+.0%')}; false successes "
                      f"{fmt_interval(c['false_successes_diff'], '+.0%')}; "
                      f"rework {fmt_interval(c['rework_diff'], '+.2f')}")


def print_approval_request(console: Console, run_id: str, request: dict[str, Any]) -> None:
    """What a person is asked to approve, in full, and the commands that decide it."""
    owners = ", ".join(request["owners"])
    console.print(f"[bold cyan]run {run_id} waits for approval[/] from {owners}: {request['action']}")
    if request.get("model_reason"):
        console.print(f"  the model said: {escape(request['model_reason'].strip()[-500:])}", soft_wrap=True)
    show_diff(console, request.get("diff", ""))
    first_owner = request["owners"][0].lstrip("@") if request["owners"] else "OWNER"
    console.print(f"  approve: tether approve {run_id} --as {first_owner} --reason '...'", soft_wrap=True)
    console.print(f"  deny:    tether deny {run_id} --reason '...'", soft_wrap=True)


def show_diff(console: Console, diff: str) -> None:
    if diff:
        console.print(Syntax(diff.rstrip("\n"), "diff", theme="ansi_dark", word_wrap=True))


def print_finding(console: Console, finding: Any) -> None:
    """One line of `tether doctor`: what, ok or not, and why (indented below)."""
    mark = "[green]ok[/]  " if finding.ok else "[red]FAIL[/]"
    first, _, rest = finding.detail.partition("\n")
    console.print(f"{mark} {finding.what}: {escape(first)}", soft_wrap=True)
    for line in failure_tail(rest).splitlines():
        console.print(f"       [dim]{escape(line)}[/]", soft_wrap=True)


def table_of(columns: list[str], rows: list[list[Any]], whole: tuple[str, ...], **options: Any) -> Table:
    """A table whose `whole` columns (ids, states, model names) are never shortened or wrapped, so
    they can be copied at any width; the other columns give way."""
    table = Table(**options)
    for index, header in enumerate(columns):
        if header in whole:
            width = max([len(header), *(len(str(row[index])) for row in rows)])
            table.add_column(header, no_wrap=True, min_width=width)
        else:
            table.add_column(header, overflow="ellipsis")
    for row in rows:
        table.add_row(*row)
    return table
