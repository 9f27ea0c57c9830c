"""An eval's results as results.json and a self-contained HTML page with inline SVG plots: pass rate
with 95% intervals, cost against pass rate, latency distributions, and a per-task grid."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
W, PAD = 720, 150


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _svg(height: int, label: str, body: list[str]) -> str:
    return (f'<svg viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img" aria-label="{_esc(label)}">'
            + "".join(body) + "</svg>")


def _x(value: float, top: float) -> float:
    return PAD + (value / top if top else 0) * (W - PAD - 30)


def _axis(y: float, top: float, fmt: str) -> list[str]:
    parts = [f'<line x1="{PAD}" x2="{W - 30}" y1="{y}" y2="{y}" stroke="#999"/>']
    for i in range(6):
        value = top * i / 5
        parts.append(f'<text x="{_x(value, top):.0f}" y="{y + 16}" font-size="11" text-anchor="middle">'
                     f'{format(value, fmt)}</text>')
    return parts


def pass_rate_plot(summary: dict[str, dict[str, Any]]) -> str:
    names = list(summary)
    height = 40 + 34 * len(names) + 30
    body = []
    for i, name in enumerate(names):
        s, y = summary[name], 30 + 34 * i
        low, high = s["pass_rate_ci"]
        color = COLORS[i % len(COLORS)]
        body += [f'<text x="{PAD - 8}" y="{y + 14}" font-size="12" text-anchor="end">{_esc(name)}</text>',
                 f'<rect x="{PAD}" y="{y}" width="{_x(s["pass_rate"], 1) - PAD:.1f}" height="20" fill="{color}" '
                 f'opacity="0.75"><title>{s["solved"]}/{s["runs"]} solved</title></rect>',
                 f'<line x1="{_x(low, 1):.1f}" x2="{_x(high, 1):.1f}" y1="{y + 10}" y2="{y + 10}" stroke="#222" '
                 'stroke-width="2"/>',
                 f'<text x="{_x(high, 1) + 6:.1f}" y="{y + 14}" font-size="11">{s["pass_rate"]:.0%} '
                 f'[{low:.0%}, {high:.0%}]</text>']
    body += _axis(height - 30, 1, ".0%")
    return _svg(height, "hidden-check pass rate with 95% intervals", body)


def cost_plot(summary: dict[str, dict[str, Any]]) -> str:
    height, top_y = 320, 280
    tokens = [s["tokens_per_task"] or 0 for s in summary.values()]
    top = max([*tokens, 1]) * 1.15
    body = [f'<rect x="{PAD}" y="20" width="{W - PAD - 30}" height="{top_y - 20}" fill="#fafafa" stroke="#ccc"/>']
    for i in range(6):
        y = top_y - (top_y - 20) * i / 5
        body.append(f'<text x="{PAD - 8}" y="{y + 4:.0f}" font-size="11" text-anchor="end">{i / 5:.0%}</text>')
    for i, (name, s) in enumerate(summary.items()):
        x, y = _x(s["tokens_per_task"] or 0, top), top_y - (top_y - 20) * s["pass_rate"]
        low, high = s["pass_rate_ci"]
        color = COLORS[i % len(COLORS)]
        body += [f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top_y - (top_y - 20) * low:.1f}" '
                 f'y2="{top_y - (top_y - 20) * high:.1f}" stroke="{color}" stroke-width="2"/>',
                 f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{color}"/>',
                 f'<text x="{x + 9:.1f}" y="{y - 6:.1f}" font-size="12">{_esc(name)}</text>']
    body += _axis(top_y, top, ",.0f")
    body.append(f'<text x="{(W + PAD) / 2}" y="{height - 2}" font-size="12" text-anchor="middle">'
                'tokens per task (mean)</text>')
    return _svg(height, "pass rate against tokens per task", body)


def latency_plot(rows: list[dict[str, Any]], summary: dict[str, dict[str, Any]]) -> str:
    names = list(summary)
    height = 40 + 40 * len(names) + 30
    top = max([r["latency_s"] for r in rows] + [1]) * 1.05
    body = []
    for i, name in enumerate(names):
        y, color = 30 + 40 * i, COLORS[i % len(COLORS)]
        body.append(f'<text x="{PAD - 8}" y="{y + 14}" font-size="12" text-anchor="end">{_esc(name)}</text>')
        for row in (r for r in rows if r["config"] == name):
            fill = color if row["passed_hidden"] else "none"
            body.append(f'<circle cx="{_x(row["latency_s"], top):.1f}" cy="{y + 10}" r="4" fill="{fill}" '
                        f'stroke="{color}"><title>{_esc(row["task"])}: {row["latency_s"]:.1f}s</title></circle>')
        for key, mark in (("latency_p50_s", "p50"), ("latency_p95_s", "p95")):
            value = summary[name][key]
            if value is not None:
                x = _x(value, top)
                body += [f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y - 2}" y2="{y + 22}" stroke="#222"/>',
                         f'<text x="{x:.1f}" y="{y - 4}" font-size="10" text-anchor="middle">{mark}</text>']
    body += _axis(height - 30, top, ".0f")
    return _svg(height, "latency per run in seconds (filled: solved)", body)


def task_grid(rows: list[dict[str, Any]], configs: list[str]) -> str:
    repeats = sorted({r["repeat"] for r in rows})
    cells = {(r["task"], r["config"], r["repeat"]): r for r in rows}
    head = "".join(f"<th>{_esc(c)}{f' #{n}' if len(repeats) > 1 else ''}</th>" for c in configs for n in repeats)
    lines = []
    for task in sorted({r["task"] for r in rows}):
        tds = []
        for config in configs:
            for n in repeats:
                row = cells.get((task, config, n))
                if row is None:
                    tds.append('<td class="none">·</td>')
                    continue
                kind = "pass" if row["passed_hidden"] else "escaped" if row["escaped_defect"] else "fail"
                mark = {"pass": "✓", "escaped": "!", "fail": "✗"}[kind]
                tip = (f"{row['status']} {row['stop_rule']} · {row['latency_s']:.0f}s · {row['tokens']} tokens · "
                       f"run {row['run_id']}")
                tds.append(f'<td class="{kind}" title="{_esc(tip)}">{mark}</td>')
        lines.append(f"<tr><th>{_esc(task)}</th>{''.join(tds)}</tr>")
    return f'<table class="grid"><tr><th>task</th>{head}</tr>{"".join(lines)}</table>'


def fmt_value(value: Any, spec: str) -> str:
    """A figure in `spec`, or a dash when there is none (no solved task, no run)."""
    return "–" if value is None else format(value, spec)


def summary_table(summary: dict[str, dict[str, Any]]) -> str:
    head = ("<tr><th>config</th><th>solved</th><th>pass rate [95% CI]</th><th>visible pass</th><th>p50 / p95 s</th>"
            "<th>tokens/task</th><th>tokens/solved</th><th>USD/task</th><th>interrupts</th><th>brake / budget stops"
            "</th><th>rework (check fails / lines)</th><th>escaped defects</th><th>false successes</th>"
            "<th>cap hits</th></tr>")
    lines = []
    for name, s in summary.items():
        low, high = s["pass_rate_ci"]
        lines.append(
            f"<tr><th>{_esc(name)}</th><td>{s['solved']}/{s['runs']}</td><td>{s['pass_rate']:.0%} [{low:.0%}, "
            f"{high:.0%}]</td><td>{s['visible_pass_rate']:.0%}</td><td>{fmt_value(s['latency_p50_s'], '.1f')} / "
            f"{fmt_value(s['latency_p95_s'], '.1f')}</td><td>{fmt_value(s['tokens_per_task'], ',.0f')}</td>"
            f"<td>{fmt_value(s['tokens_per_solved'], ',.0f')}</td><td>{fmt_value(s['usd_per_task'], '.4f')}</td>"
            f"<td>{s['interrupts']}</td><td>{s['brake_stops']} / {s['budget_stops']}</td>"
            f"<td>{s['rework']} / {s['rework_lines']}</td><td>{s['escaped_defects']}</td>"
            f"<td>{s['false_successes']} of {s['succeeded']}</td><td>{s['cap_hits']}</td></tr>")
    return f"<table>{head}{''.join(lines)}</table>"


def fmt_interval(found: dict[str, float] | None, spec: str) -> str:
    """A paired difference with its 95% interval: "+5% [-2%, +12%]"."""
    if found is None:
        return "–"
    return f"{format(found['diff'], spec)} [{format(found['low'], spec)}, {format(found['high'], spec)}]"


def comparison_table(comparisons: list[dict[str, Any]]) -> str:
    head = ("<tr><th>second vs first</th><th>pairs</th><th>only first / only second solved</th><th>McNemar p</th>"
            "<th>pass rate diff [95% CI]</th><th>tokens diff</th><th>latency diff s</th><th>escaped defects diff</th>"
            "<th>false successes diff</th><th>rework diff</th></tr>")
    lines = [f"<tr><th>{_esc(c['second'])} vs {_esc(c['first'])}</th><td>{c['pairs']}</td>"
             f"<td>{c['only_first_passed']} / {c['only_second_passed']}</td><td>{c['mcnemar_p']:.3f}</td>"
             f"<td>{fmt_interval(c['pass_rate_diff'], '+.0%')}</td><td>{fmt_interval(c['tokens_diff'], '+,.0f')}</td>"
             f"<td>{fmt_interval(c['latency_diff_s'], '+.1f')}</td>"
             f"<td>{fmt_interval(c['escaped_defects_diff'], '+.0%')}</td>"
             f"<td>{fmt_interval(c['false_successes_diff'], '+.0%')}</td>"
             f"<td>{fmt_interval(c['rework_diff'], '+.2f')}</td></tr>" for c in comparisons]
    return f"<table>{head}{''.join(lines)}</table>"


def eval_html(results: dict[str, Any], title: str) -> str:
    summary, rows = results["summary"], results["rows"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1150px; color: #222; }}
table {{ border-collapse: collapse; margin: .5rem 0 1.5rem; }} td, th {{ border-bottom: 1px solid #ddd;
padding: 3px 8px; text-align: left; }} .grid td {{ text-align: center; width: 2.2em; }}
.pass {{ background: #d8f0d8; }} .fail {{ background: #f6d6d6; }} .escaped {{ background: #ffe2b8; }}
.none {{ color: #bbb; }} .note {{ background: #f4f7fb; padding: .6rem 1rem; border-left: 4px solid #1f77b4; }}
</style></head><body>
<h1>{_esc(title)}</h1>
<p class="note">Eval <code>{_esc(results['eval_id'])}</code> on suite <code>{_esc(results['suite'])}</code>:
{len(rows)} scored runs, {results['repeats']} repeat(s). A task is solved when the <b>hidden</b> check (the full
original tests, put back after the agent finished) passes on the delivered commit. An <b>escaped defect</b> passed
the visible check and failed the hidden one; a <b>false success</b> is a run that ended <i>succeeded</i> (it said it
was done) and failed the hidden check. Pass-rate intervals are Wilson 95%; paired differences are bootstrap
95% intervals over (task, repeat) pairs, second config minus first; McNemar is exact.</p>
<h2>Summary</h2>
{summary_table(summary)}
<h2>Paired comparisons</h2>
{comparison_table(results['comparisons'])}
<h2>Pass rate (hidden checks)</h2>
{pass_rate_plot(summary)}
<h2>Pass rate against cost</h2>
<p>Vertical bars: 95% intervals of the pass rate.</p>
{cost_plot(summary)}
<h2>Latency</h2>
<p>One circle per run (filled: solved); ticks mark p50 and p95.</p>
{latency_plot(rows, summary)}
<h2>Per task</h2>
<p>✓ solved · ! escaped defect (visible passed, hidden failed) · ✗ not solved. Hover for the run.</p>
{task_grid(rows, list(summary))}
</body></html>
"""


def write_reports(results: dict[str, Any], out: Path, title: str) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "results.json", out / "report.html"
    json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    html_path.write_text(eval_html(results, title), encoding="utf-8")
    return json_path, html_path
