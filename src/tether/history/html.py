"""The outcome report as one self-contained HTML page: survival and merge figures per group with
their intervals, the weekly trend as inline SVG, and a row per change."""

from __future__ import annotations

import html
from typing import Any

from tether.history.report import Report


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _merged(merged: bool, how: str | None) -> str:
    return f"yes ({how})" if merged else "no"


def _usd(value: float | None) -> str:
    return "–" if value is None else f"${value:.4f}"


def _ci(interval: Any) -> str:
    low, high = interval
    return f"{low:.0%}–{high:.0%}"


def _trend(weeks: dict[str, dict[str, Any]]) -> str:
    """Bars: changes per week; the dot on each, the share of its lines surviving."""
    if not weeks:
        return "<p>No changes in the period.</p>"
    width, height, pad = 760, 220, 40
    most = max(week["changes"] for week in weeks.values()) or 1
    step = (width - 2 * pad) / len(weeks)
    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             'aria-label="changes and surviving share per week">']
    for index, (name, week) in enumerate(weeks.items()):
        x = pad + index * step
        bar = (height - 2 * pad) * week["changes"] / most
        parts.append(f'<rect x="{x + 2:.1f}" y="{height - pad - bar:.1f}" width="{max(2.0, step - 4):.1f}" '
                     f'height="{bar:.1f}" fill="#9ecae1"><title>{html.escape(name)}: {week["changes"]} changes'
                     '</title></rect>')
        if week["survival"] is not None:
            y = height - pad - (height - 2 * pad) * week["survival"]
            parts.append(f'<circle cx="{x + step / 2:.1f}" cy="{y:.1f}" r="4" fill="#d62728"><title>'
                         f'{_pct(week["survival"])} of its lines survive</title></circle>')
        if index % max(1, len(weeks) // 8) == 0:
            parts.append(f'<text x="{x + 2:.1f}" y="{height - pad + 16}" font-size="10">{html.escape(name)}</text>')
    parts.append(f'<text x="{pad}" y="16" font-size="11">bars: changes per week (at most {most}); red: share of '
                 'their lines surviving</text></svg>')
    return "".join(parts)


def report_html(report: Report) -> str:
    groups = report.groups()
    group_rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{g['changes']}</td><td>{_pct(g['merged_share'])} "
        f"({_ci(g['merged_ci'])})</td><td>{g['hours_to_merge_p50'] if g['hours_to_merge_p50'] is not None else '–'}"
        f"</td><td>{g['lines_added']}</td><td>{_pct(g['survival'])} ({_ci(g['survival_ci'])})</td>"
        f"<td>{g['reverted']}</td><td>{g['reworked']} ({g['lines_rewritten_by_others']} lines)</td>"
        f"<td>{_usd(g['usd_per_merged'])}</td></tr>" for name, g in groups.items())
    change_rows = "".join(
        f"<tr><td><code>{row.outcome.commit[:10]}</code></td><td>{html.escape(row.outcome.label)}</td>"
        f"<td>{html.escape(row.group)}</td><td>{_merged(row.outcome.merged, row.outcome.how)}</td>"
        f"<td>{row.outcome.added}</td><td>{_pct(row.outcome.survival)}</td>"
        f"<td>{(row.outcome.reverted_by or '')[:10]}</td><td>{len(row.outcome.follow_ups)}</td></tr>"
        for row in report.rows)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Is it helping? {html.escape(report.repo)}</title>
<style>body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }} td, th {{ border-bottom: 1px solid #ddd; padding: 4px 8px;
text-align: left; vertical-align: top; }}</style></head><body>
<h1>Is it helping? {html.escape(report.repo)}</h1>
<p>Every delivered change, followed on <code>{html.escape(report.branch)}</code>: merged (by ancestry, or by patch id
for squash and rebase merges), the share of its added lines still there {report.days:g} days after it merged (or
today, for younger ones), reverts, and commits by others that rewrote its lines within {report.days:g} days.
Intervals are 95% (Wilson for shares of changes, bootstrap for the share of lines).</p>
<h2>By configuration</h2>
<table><tr><th>group</th><th>changes</th><th>merged</th><th>hours to merge (p50)</th><th>lines added</th>
<th>lines surviving</th><th>reverted</th><th>rewritten by others</th><th>USD per merged</th></tr>{group_rows}</table>
<h2>Week by week</h2>{_trend(report.weeks())}
<h2>Changes</h2>
<table><tr><th>commit</th><th>change</th><th>group</th><th>merged</th><th>added</th><th>surviving</th>
<th>reverted by</th><th>follow-ups</th></tr>{change_rows}</table>
</body></html>
"""
