"""A research run's metric against its iterations, as one self-contained HTML page (an SVG plot)."""

from __future__ import annotations

import html
from typing import Any

W, H, PAD = 720, 320, 64


def research_html(summary: dict[str, Any], metric: str, direction: str) -> str:
    """The metric per iteration: the base (with its noise band), each proposal kept (green) or
    reverted (red; a proposal never measured sits on the axis as a cross), and the best so far."""
    points = summary["research"]
    values = [p["median"] for p in points if p["median"] is not None]
    low, high = min(values), max(values)
    noise = points[0]["spread"]
    low, high = min(low, points[0]["median"] - noise), max(high, points[0]["median"] + noise)
    span = (high - low) or 1.0
    last = max(1, points[-1]["iteration"])

    def x(iteration: int) -> float:
        return PAD + iteration / last * (W - PAD - 24)

    def y(value: float) -> float:
        return 24 + (1 - (value - low) / span) * (H - 72)

    base = points[0]["median"]
    band = (f'<rect x="{PAD}" y="{y(base + noise):.1f}" width="{W - PAD - 24}" '
            f'height="{max(1.0, y(base - noise) - y(base + noise)):.1f}" fill="#e8eef8"/>')
    best, steps = base, [f"{x(0):.1f},{y(base):.1f}"]
    marks = []
    for point in points:
        px = x(point["iteration"])
        title = html.escape(f"iteration {point['iteration']}: {point['reason']}")
        if point["median"] is None:
            marks.append(f'<text x="{px:.1f}" y="{H - 44}" text-anchor="middle" fill="#c0392b">×<title>{title}'
                         "</title></text>")
            continue
        if point["kept"]:
            best = point["median"]
        steps.append(f"{px:.1f},{y(best):.1f}")
        colour = "#27ae60" if point["kept"] else "#c0392b"
        marks.append(f'<circle cx="{px:.1f}" cy="{y(point["median"]):.1f}" r="5" fill="{colour}"><title>{title}'
                     f"</title></circle>")
    ticks = "".join(f'<text x="{PAD - 8}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end">{v:.4g}</text>'
                    for v in (low, low + span / 2, high))
    labels = "".join(f'<text x="{x(p["iteration"]):.1f}" y="{H - 26}" font-size="11" text-anchor="middle">'
                     f'{"base" if p["iteration"] == 0 else p["iteration"]}</text>' for p in points)
    kept = sum(1 for p in points[1:] if p["kept"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Research run {html.escape(summary['run_id'])}</title>
<style>body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 800px; }}</style></head><body>
<h1>Research run {html.escape(summary['run_id'])}</h1>
<p><code>{html.escape(metric)}</code>, {html.escape(direction)} is better: {base:g} on the base (noise
{noise:g}), {best:g} at the end; {kept} of {len(points) - 1} proposals kept. {html.escape(summary['status'])}:
{html.escape(summary['reason'])}</p>
<svg width="{W}" height="{H}" role="img" aria-label="the metric against iterations">
{band}<polyline points="{' '.join(steps)}" fill="none" stroke="#2c3e50" stroke-dasharray="4 3"/>
{''.join(marks)}{ticks}{labels}
<text x="{W / 2}" y="{H - 6}" font-size="12" text-anchor="middle">iteration (green kept, red reverted,
× not measured; dashed: the best so far; band: the base's noise)</text></svg></body></html>
"""
