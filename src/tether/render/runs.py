"""A run after the fact: its summary, events, replay report, approval request and doctor findings."""

from __future__ import annotations

from typing import Any

from rich.columns import Columns
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tether.ledger import StoredEvent
from tether.render.text import STATUS_STYLE, failure_tail, short, show_diff
from tether.replay import ReplayReport


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

    # Each meter whole: a narrow terminal wraps between them, never inside one.
    table.add_row("budget", Columns([Text(item, no_wrap=True) for item in (
        of(f"{usage['steps']} steps", "max_steps") + (" a try" if summary.get("attempts", 1) > 1
                                                       and limits.get("max_steps") else ""),
        of(f"{usage['tool_calls']} tool calls", "max_tool_calls"),
        of(f"{usage['tokens']:,} tokens", "max_tokens"),
        of(f"${usage['usd']:.4f}", "max_usd"),
        of(f"{usage['wall_s']:.1f}s", "max_wall_s"),
    )], padding=(0, 2)))
    if summary["approvals"]:
        table.add_row("approvals", "; ".join(
            f"{a['action']} → {a['decision']}" + (f" by {a['by']}" if a.get("by") else "")
            for a in summary["approvals"]))
    table.add_row("denials", str(len(summary["denials"])) + (
        " (" + ", ".join(sorted({d["rule"] for d in summary["denials"]})) + ")" if summary["denials"] else ""))
    table.add_row("brakes", "; ".join(f"{b['detector']}: {b['reason']}" for b in summary["brakes"]) or "none")
    if summary.get("shadowed"):
        table.add_row("would have stopped", "; ".join(f"at step {s['step']}: {s['detector']} ({s['reason']})"
                                                       for s in summary["shadowed"]) + " (shadow mode)")
    table.add_row("interrupts", f"{summary['interrupts']} (approval requests, denials by people, manual stops)")
    if summary["rework"]:
        table.add_row("rework", f"{summary['rework']} failed submits before the end")
    if summary.get("research"):
        table.add_row("metric", research_curve(summary["research"]))
    if summary.get("factory"):
        table.add_row("candidates", factory_line(summary["factory"]))
    console.print(table)


def factory_line(factory: dict[str, Any]) -> str:
    """Each candidate's checks in order (✓ passed, · failed), its group, the pick:
    `0 ·✓ group 1 · 1 ✓ group 1, chosen · 2 · failed; agreement on 8 inputs`."""
    parts = []
    for candidate in factory["candidates"]:
        curve = "".join("✓" if passed else "·" for passed in candidate["curve"]) or "-"
        where = "failed" if not candidate["passed"] else f"group {candidate['group'] + 1}" \
            if candidate["group"] is not None else "passed"
        parts.append(f"{candidate['candidate']} {curve} {where}" + (", chosen" if candidate["chosen"] else ""))
    judged = f"; {factory['method']} on {factory['judge_inputs']} judge inputs" if factory["method"] else ""
    return " · ".join(parts) + judged


def research_curve(points: list[dict[str, Any]]) -> str:
    """The metric per iteration, kept and reverted marked: `base 100 → 1: 60 kept → 2: 80 reverted`."""
    parts = []
    for point in points:
        verdict = "kept" if point["kept"] else "reverted"
        if point["iteration"] == 0:
            parts.append(f"base {point['median']:g} (noise {point['spread']:g})")
        elif point["median"] is None:
            parts.append(f"{point['iteration']}: {verdict}, not measured")
        else:
            parts.append(f"{point['iteration']}: {point['median']:g} {verdict}")
    return " → ".join(parts)


def print_events(console: Console, events: list[StoredEvent], full: bool = False) -> None:
    for event in events:
        if full:
            console.print(f"[dim]{event.seq:>4}[/] [bold]{event.type}[/]")
            console.print_json(event.payload_json)
        else:
            console.print(f"[dim]{event.seq:>4}[/] [bold]{event.type:<18}[/] {escape(short(event.payload_json, 110))}")


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


def print_approval_request(console: Console, run_id: str, request: dict[str, Any]) -> None:
    """What a person is asked to approve, in full, and the commands that decide it."""
    owners = ", ".join(request["owners"])
    console.print(f"[bold cyan]run {run_id} waits for approval[/] from {owners}: {request['action']}")
    if request.get("model_reason"):
        console.print(f"  the model said: {escape(request['model_reason'].strip()[-500:])}", soft_wrap=True)
    show_diff(console, request.get("diff", ""))
    console.print(f"  approve (as {owners}, signed in as yourself or with $TETHER_TOKEN): "
                  f"tether approve {run_id} --reason '...'", soft_wrap=True)
    console.print(f"  deny (anyone):    tether deny {run_id} --reason '...'", soft_wrap=True)


def print_finding(console: Console, finding: Any) -> None:
    """One line of `tether doctor`: what, ok or not, and why (indented below)."""
    mark = "[green]ok[/]  " if finding.ok else "[red]FAIL[/]"
    first, _, rest = finding.detail.partition("\n")
    console.print(f"{mark} {finding.what}: {escape(first)}", soft_wrap=True)
    for line in failure_tail(rest).splitlines():
        console.print(f"       [dim]{escape(line)}[/]", soft_wrap=True)
