"""A factory run's candidates as one self-contained HTML page: the required checks passing at each
check of each candidate (its curve), coloured by the group it behaved with on the judge's inputs."""

from __future__ import annotations

import html
from typing import Any

W, ROW, PAD = 720, 34, 150
PALETTE = ("#27ae60", "#2980b9", "#8e44ad", "#d35400", "#16a085", "#7f8c8d")


def factory_html(summary: dict[str, Any]) -> str:
    factory = summary["factory"]
    candidates = factory["candidates"]
    longest = max([len(c["curve"]) for c in candidates] + [1])
    height = 56 + ROW * len(candidates)
    step = (W - PAD - 24) / max(longest, 1)
    rows = []
    for index, candidate in enumerate(candidates):
        y = 40 + index * ROW
        colour = PALETTE[candidate["group"] % len(PALETTE)] if candidate["group"] is not None else "#c0392b"
        label = f"candidate {candidate['candidate']}" + (" (chosen)" if candidate["chosen"] else "")
        weight = "bold" if candidate["chosen"] else "normal"
        rows.append(f'<text x="8" y="{y + 5}" font-size="12" font-weight="{weight}">{html.escape(label)}</text>')
        points = [(PAD + (i + 0.5) * step, y + (0 if passed else 10)) for i, passed in enumerate(candidate["curve"])]
        if len(points) > 1:
            rows.append(f'<polyline points="{" ".join(f"{x:.1f},{py:.1f}" for x, py in points)}" fill="none" '
                        f'stroke="{colour}"/>')
        for (x, py), passed in zip(points, candidate["curve"], strict=True):
            title = html.escape(f"candidate {candidate['candidate']}: {candidate['reason']}")
            rows.append(f'<circle cx="{x:.1f}" cy="{py:.1f}" r="5" fill="{colour if passed else "#fff"}" '
                        f'stroke="{colour}"><title>{title}</title></circle>')
    groups = "; ".join("{" + ", ".join(str(c) for c in group) + "}" for group in factory["groups"]) or "none"
    passed = sum(1 for c in candidates if c["passed"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Factory run {html.escape(summary['run_id'])}</title>
<style>body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 800px; }}</style></head><body>
<h1>Factory run {html.escape(summary['run_id'])}</h1>
<p>{len(candidates)} candidates, {passed} passed the visible evals; {factory['judge_inputs']} judge inputs;
groups of identical behaviour: {html.escape(groups)}; picked by {html.escape(str(factory['method']))}.
{html.escape(summary['status'])}: {html.escape(summary['reason'])}</p>
<svg width="{W}" height="{height}" role="img" aria-label="the visible evals per candidate and per check">
{''.join(rows)}
<text x="{W / 2}" y="{height - 6}" font-size="12" text-anchor="middle">each check of a candidate, left to right
(filled, high: the required checks passed; hollow, low: they failed); colour: the group it behaved with,
red: it never passed</text></svg></body></html>
"""
