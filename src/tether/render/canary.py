"""A canary on screen (a table) and as an HTML page with the confidence sequence drawn over tasks."""

from __future__ import annotations

import html

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tether.gate.canary import ArmMeasures, CanaryStatus, Point

W, H, PAD = 720, 300, 60


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.4f}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _interval(point: Point | None, money: bool = False) -> str:
    if point is None:
        return "not yet (fewer than two tasks)"
    shown = (lambda v: f"{v:+.4f}") if money else (lambda v: f"{v:+.3f}")
    return f"{shown(point.estimate)} [{shown(point.lower)}, {shown(point.upper)}]"


def _decision(found: CanaryStatus) -> str:
    canary = found.canary
    if canary.stopped is not None:
        return f"stopped by {canary.stopped.by}: {canary.stopped.reason}"
    if canary.decided is not None:
        return f"{canary.decided.decision} after {canary.decided.tasks} tasks: {canary.decided.reason}"
    if found.verdict is not None:
        return f"undecided; the evidence now supports {found.verdict[0]} ({found.verdict[1]})"
    total = found.candidate.tasks + found.current.tasks
    return f"undecided after {total} of at least {canary.started.min_tasks} tasks"


def print_canary(console: Console, found: CanaryStatus) -> None:
    started = found.canary.started
    console.print(f"[bold]{found.canary.id}[/]: {started.share:.0%} of {escape(started.repo or 'every repository')}"
                  f" to {escape(started.candidate_path)}; {escape(_decision(found))}", highlight=False)
    table = Table("arm", "tasks", "fixes", "fix rate", "cost", "per fix")
    for name, arm in (("candidate", found.candidate), ("current", found.current)):
        table.add_row(name, str(arm.tasks), str(arm.fixes), _rate(arm.fix_rate), _money(arm.usd),
                      _money(arm.usd_per_fix))
    console.print(table)
    console.print(f"fix rate, candidate - current: {_interval(found.fix_difference)}", highlight=False)
    console.print(f"cost per task, candidate - current: {_interval(found.cost_difference, money=True)}",
                  highlight=False)
    console.print(f"(always-valid {1 - started.alpha:.0%} intervals: they hold however often they are looked at)",
                  highlight=False)


def _path_plot(path: list[Point]) -> str:
    if not path:
        return "<p>No interval yet: it needs two finished tasks.</p>"
    last = path[-1].tasks
    top = max(0.25, *(min(abs(p.lower), 1.0) for p in path), *(min(abs(p.upper), 1.0) for p in path))

    def x(tasks: int) -> float:
        return PAD + (tasks / last) * (W - PAD - 20)

    def y(value: float) -> float:
        return 20 + (1 - (max(-top, min(top, value)) + top) / (2 * top)) * (H - 60)

    band = [f"{x(p.tasks):.1f},{y(p.upper):.1f}" for p in path] + \
        [f"{x(p.tasks):.1f},{y(p.lower):.1f}" for p in reversed(path)]
    line = " ".join(f"{x(p.tasks):.1f},{y(p.estimate):.1f}" for p in path)
    ticks = "".join(f'<text x="{PAD - 6}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end">{v:+.2f}</text>'
                    for v in (-top, -top / 2, 0, top / 2, top))
    return (f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="fix-rate difference">'
            f'<polygon points="{" ".join(band)}" fill="#1f77b4" opacity="0.2"/>'
            f'<polyline points="{line}" fill="none" stroke="#1f77b4" stroke-width="2"/>'
            f'<line x1="{PAD}" x2="{W - 20}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#d62728" stroke-dasharray="4 3"/>'
            f'{ticks}<text x="{W - 20}" y="{H - 20}" font-size="11" text-anchor="end">{last} tasks</text>'
            f'<text x="{PAD}" y="{H - 20}" font-size="11">0</text></svg>')


def _arm_row(name: str, arm: ArmMeasures) -> str:
    return (f"<tr><td>{name}</td><td>{arm.tasks}</td><td>{arm.fixes}</td><td>{_rate(arm.fix_rate)}</td>"
            f"<td>{_money(arm.usd)}</td><td>{_money(arm.usd_per_fix)}</td></tr>")


def canary_html(found: CanaryStatus) -> str:
    started = found.canary.started
    esc = html.escape
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Canary {esc(found.canary.id)}</title>
<style>body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 900px; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border-bottom: 1px solid #ddd; padding: 3px 10px; }}</style>
</head><body>
<h1>Canary {esc(found.canary.id)}</h1>
<p>{started.share:.0%} of the queued tasks of {esc(started.repo or 'every repository')} run with
<code>{esc(started.candidate_path)}</code> (sha256 {esc(started.candidate_sha256[:12])}), started by
{esc(started.by)}. <b>{esc(_decision(found))}</b></p>
<table><tr><th>arm</th><th>tasks</th><th>fixes</th><th>fix rate</th><th>cost</th><th>cost per fix</th></tr>
{_arm_row("candidate", found.candidate)}{_arm_row("current", found.current)}</table>
<h2>Fix rate, candidate minus current, after each task</h2>
<p>The line is the inverse-propensity-weighted estimate; the band its always-valid {1 - started.alpha:.0%}
confidence sequence (valid at every task at once, so looking after each task is allowed). The candidate
is promoted when the band leaves zero upwards (after {started.min_tasks} tasks, its cost per fix within
{started.cost_tolerance:.0%}) and rolled back when it leaves downwards.</p>
{_path_plot(found.path)}
<p>Now: fix rate {esc(_interval(found.fix_difference))}; cost per task
{esc(_interval(found.cost_difference, money=True))}.</p>
</body></html>
"""
