"""The sweep as a self-contained HTML page: the frontier plotted as inline SVG, and its table."""

from __future__ import annotations

import html
from typing import Any

from tether.backtest.sweep import Point, SweepResult

WIDTH, HEIGHT, PAD = 720, 420, 56


def _xy(false_stop: float, saved: float, x_max: float, y_max: float) -> tuple[float, float]:
    return (PAD + false_stop / x_max * (WIDTH - 2 * PAD), HEIGHT - PAD - saved / y_max * (HEIGHT - 2 * PAD))


def _plot(result: SweepResult) -> str:
    x_max = max(0.05, max(p.fit["false_stop_rate"] for p in result.points)) * 1.05
    y_max = max(0.05, max(p.fit["saved_share"] for p in result.points)) * 1.1
    parts = [f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
             'aria-label="saved share against false-stop rate">',
             f'<rect x="{PAD}" y="{PAD}" width="{WIDTH - 2 * PAD}" height="{HEIGHT - 2 * PAD}" fill="#fafafa" '
             'stroke="#ccc"/>']
    for i in range(6):
        fx, fy = x_max * i / 5, y_max * i / 5
        x, _ = _xy(fx, 0, x_max, y_max)
        _, y = _xy(0, fy, x_max, y_max)
        parts.append(f'<text x="{x:.0f}" y="{HEIGHT - PAD + 18}" font-size="11" text-anchor="middle">{fx:.0%}</text>')
        parts.append(f'<text x="{PAD - 8}" y="{y + 4:.0f}" font-size="11" text-anchor="end">{fy:.0%}</text>')
    parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT - 12}" font-size="12" text-anchor="middle">'
                 'resolved runs stopped (false stops)</text>')
    parts.append(f'<text x="14" y="{HEIGHT / 2}" font-size="12" text-anchor="middle" '
                 f'transform="rotate(-90 14 {HEIGHT / 2})">USD saved on failed runs</text>')
    for point in result.points:
        x, y = _xy(point.fit["false_stop_rate"], point.fit["saved_share"], x_max, y_max)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="#bbb"/>')
    line = " ".join("{:.1f},{:.1f}".format(*_xy(p.fit["false_stop_rate"], p.fit["saved_share"], x_max, y_max))
                    for p in result.frontier)
    parts.append(f'<polyline points="{line}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
    for point in result.frontier:
        x, y = _xy(point.fit["false_stop_rate"], point.fit["saved_share"], x_max, y_max)
        tx, ty = _xy(min(point.test["false_stop_rate"], x_max), min(point.test["saved_share"], y_max), x_max, y_max)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#1f77b4"><title>fit: '
                     f'{html.escape(point.policy_toml())}</title></circle>')
        parts.append(f'<rect x="{tx - 3:.1f}" y="{ty - 3:.1f}" width="6" height="6" fill="#ff7f0e"/>')
    if result.chosen is not None:
        x, y = _xy(result.chosen.fit["false_stop_rate"], result.chosen.fit["saved_share"], x_max, y_max)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="none" stroke="#d62728" stroke-width="2"/>')
    parts.append("</svg>")
    return "\n".join(parts)


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _ci(interval: Any) -> str:
    low, high = interval
    return f"{low:.1%}–{high:.1%}"


def _row(point: Point, chosen: bool) -> str:
    fit, test = point.fit, point.test
    mark = ' class="chosen"' if chosen else ""
    return (f"<tr{mark}><td><pre>{html.escape(point.policy_toml())}</pre></td>"
            f"<td>{_pct(fit['false_stop_rate'])}</td><td>{_pct(fit['saved_share'])}</td>"
            f"<td>{_pct(test['false_stop_rate'])} ({_ci(test['false_stop_ci'])})</td>"
            f"<td>{_pct(test['saved_share'])} ({_ci(test['saved_share_ci'])})</td>"
            f"<td>{test['unresolved_stopped']}/{test['unresolved']}</td><td>{test['false_stops']}/{test['resolved']}</td>"
            f"<td>${test['saved_usd']:.2f}</td></tr>")


def sweep_html(result: SweepResult, title: str) -> str:
    chosen = result.chosen
    verdict = ("No configuration on the frontier stays under the target false-stop rate on the fit runs."
               if chosen is None else
               f"At a false-stop target of {_pct(result.target_false_stop_rate)}, the chosen policy (circled) "
               f"stopped {chosen.test['unresolved_stopped']} of {chosen.test['unresolved']} failed test runs, saving "
               f"{_pct(chosen.test['saved_share'])} of their cost (95% CI {_ci(chosen.test['saved_share_ci'])}), and "
               f"stopped {chosen.test['false_stops']} of {chosen.test['resolved']} resolved test runs "
               f"({_pct(chosen.test['false_stop_rate'])}, Wilson 95% CI {_ci(chosen.test['false_stop_ci'])}).")
    rows = "\n".join(_row(p, p is chosen) for p in result.frontier)
    split_note = (f"The fit runs are one agent's ({result.fit_on}); the test runs are the other agents': "
                  "a policy measured on agents it was not tuned for." if result.fit_on else
                  "The two halves are fixed by a hash of each run's identity.")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }} td, th {{ border-bottom: 1px solid #ddd; padding: 4px 8px;
vertical-align: top; text-align: left; }} pre {{ margin: 0; font-size: 12px; }} tr.chosen {{ background: #fff3f0; }}
.note {{ background: #f4f7fb; padding: .6rem 1rem; border-left: 4px solid #1f77b4; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="note">Thresholds were chosen on the <b>fit</b> runs ({result.fit_runs} labelled runs) and every figure
marked <b>test</b> comes from the other runs ({result.test_runs}), which the search never saw. {html.escape(split_note)}
{result.configs} configurations were evaluated (all single thresholds, all pairs, and random combinations).</p>
<p>{html.escape(verdict)}</p>
<h2>Saved on failed runs against false stops</h2>
<p>Grey: every configuration (fit). Blue: the Pareto frontier (fit). Orange squares: the same frontier
configurations measured on the test half. Red circle: the chosen policy.</p>
{_plot(result)}
<h2>The frontier</h2>
<table><tr><th>policy</th><th>false stops (fit)</th><th>saved (fit)</th><th>false stops (test)</th>
<th>saved (test)</th><th>failed runs stopped (test)</th><th>resolved runs stopped (test)</th>
<th>USD saved (test)</th></tr>
{rows}
</table>
</body></html>
"""
