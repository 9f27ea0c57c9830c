"""`tether report`: is it helping? Every delivered change followed through the repository's history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tether.cli.common import DbOpt, JsonOpt, RepoOpt, app, err, fail, open_ledger, out


@app.command("report")
def report_command(
    since: Annotated[str | None, typer.Option(help="Changes made since (30d, 12w).")] = None,
    days: Annotated[float, typer.Option(help="How long after merging to measure survival and rework.")] = 30,
    attribute: Annotated[str | None, typer.Option(help="Also count the default branch's commits whose message "
                                                       "matches this (an agent's co-author trailer).")] = None,
    branch: Annotated[str | None, typer.Option(help="The default branch (default: origin/HEAD, main, master).")]
    = None,
    html: Annotated[Path | None, typer.Option("--html", help="Write the report as HTML here.")] = None,
    record_outcomes: Annotated[bool, typer.Option("--record-outcomes", help="Record merged, rejected, reverted "
                                                                             "and defect as the runs' outcomes, "
                                                                             "from the history and the forge's "
                                                                             "pull requests (tiers and canaries "
                                                                             "read them).")] = False,
    repo: RepoOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False,
) -> None:
    """For every change a run delivered (and, with --attribute, every commit an outside agent is
    credited with): merged or not and how fast, the share of its lines that survive, reverts, and
    rework by others after merging, joined with its cost; by configuration, week by week.

    Example: tether report --since 90d --attribute 'Co-Authored-By: Claude' --html report.html
    """
    import re
    import time

    from tether.gc import parse_age
    from tether.history.html import report_html
    from tether.history.refresh import refresh
    from tether.history.report import build
    from tether.workspace.git import repo_root

    if attribute is not None:
        try:
            re.compile(attribute)
        except re.error as exc:
            raise fail(f"--attribute: not a pattern: {exc}") from exc
    try:
        cutoff = time.time() - parse_age(since) if since else None
    except ValueError as exc:
        raise fail(f"--since: {exc}") from exc
    if days <= 0:
        raise fail(f"--days must be more than 0, got {days:g}")
    root = repo_root(repo.resolve())
    with open_ledger(db, root) as ledger:
        result = build(ledger, root, cutoff, days, attribute, branch)
        refreshed = refresh(ledger, root, days, by="tether report", report=result) if record_outcomes else None
    if html is not None:
        html.write_text(report_html(result))
        err.print(f"wrote {html}")
    if refreshed is not None:
        recorded = sum(run.recorded for run in refreshed.runs)
        err.print(f"recorded {recorded} outcome(s) on their runs")
        for run in refreshed.runs:
            if run.error:
                err.print(f"[yellow]{run.run_id}[/]: the forge was not asked: {run.error}", highlight=False)
    if as_json:
        out.print_json(json.dumps(result.as_dict(), default=list))
        return
    for name, group in result.groups().items():
        low, high = group["survival_ci"]
        survival = "–" if group["survival"] is None else f"{group['survival']:.0%} ({low:.0%}-{high:.0%})"
        usd = "–" if group["usd_per_merged"] is None else f"${group['usd_per_merged']:.4f}"
        out.print(f"[bold]{name}[/]", highlight=False)
        for label, value in (
                ("changes", f"{group['changes']}, merged {group['merged']} ({group['merged_share']:.0%}), "
                            f"median {group['hours_to_merge_p50']} h to merge"),
                ("lines", f"{group['lines_added']} added, {group['lines_surviving']} surviving: {survival}"),
                ("after merging", f"{group['reverted']} reverted; {group['reworked']} had lines rewritten by others "
                                  f"within {result.days:g} days ({group['lines_rewritten_by_others']} lines)"),
                ("cost", f"{usd} per merged change, {group['interrupts_per_change']:.2f} interrupts per change")):
            out.print(f"  {label:<14} {value}", highlight=False, soft_wrap=True)
