"""`tether gate` and `tether outcome`: permission tiers judged on measured SLAs, and the outcomes
they are measured on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, get_args

import typer

from tether.cli.common import ByOpt, DbOpt, JsonOpt, RepoOpt, UrlOpt, app, fail, open_ledger, out, repository_name
from tether.gate.ladder import configurations, evaluate, pin, tier_state
from tether.gate.outcomes import report_outcome
from tether.ledger import events as ev
from tether.ledger.fleet import Fleet
from tether.people import os_user
from tether.policy.load import org_tiers


@app.command("gate")
def gate_command(
    configuration: Annotated[str | None, typer.Option("--configuration", "-c",
                                                      help="One configuration (as runs record it); default: all "
                                                           "that ran in the repository.")] = None,
    pin_tier: Annotated[str | None, typer.Option("--pin", help="Pin the configuration at this tier.")] = None,
    unpin: Annotated[bool, typer.Option("--unpin", help="Let the gate judge the configuration again.")] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why (required with --pin and --unpin).")] = "",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Judge and print; record nothing.")] = False,
    by: ByOpt = None, repo: RepoOpt = Path("."), url: UrlOpt = None, db: DbOpt = None, as_json: JsonOpt = False,
) -> None:
    """Judge each configuration of the repository against the org's tier ladder and move it at
    most one tier: down when its tier's SLA to keep is breached, up when the next tier's SLA to enter
    is met. Every move is a `tier_changed` event with its evidence. --pin/--unpin record a person's
    decision instead.

    Example: tether gate --repo ../service && tether gate -c "harness openai:gpt-4o #1a2b3c4d" --pin branch
    --reason "incident 42"
    """
    root = repository_name(repo, url)
    who = by or os_user()
    with open_ledger(db, repo) as ledger:
        tiers = org_tiers(Fleet(ledger).org_policy())
        if not tiers:
            raise fail("the org policy has no \\[\\[tiers]]; set them with `tether fleet set FILE`")
        if pin_tier is not None or unpin:
            if configuration is None or (pin_tier is not None and unpin):
                raise fail("--pin and --unpin take one --configuration, and not both")
            change = pin(ledger, tiers, root, configuration, pin_tier, by=who, reason=reason)
            if as_json:
                out.print_json(json.dumps(change.as_json()))
            else:
                out.print(f"{configuration}: {change.decision} at [bold]{change.to_tier}[/] by {who}: {reason}")
            return
        names = [configuration] if configuration else configurations(ledger, root)
        verdicts = []
        for name in names:
            verdict = None if dry_run else evaluate(ledger, tiers, root, name, by=who)
            verdicts.append((name, verdict.state if verdict else tier_state(ledger, tiers, root, name), verdict))
    if as_json:
        out.print_json(json.dumps([{"configuration": name, "tier": state.tier.name, "pinned": state.pinned,
                                    "changed": verdict.changed.as_json() if verdict and verdict.changed else None,
                                    "judged": verdict.judged if verdict else None,
                                    "measures": verdict.measures.as_dict() if verdict and verdict.measures else None,
                                    "breaches": verdict.breaches if verdict else []}
                                   for name, state, verdict in verdicts]))
        return
    if not verdicts:
        out.print(f"no configuration has run in {root} yet")
    for name, state, verdict in verdicts:
        change = verdict.changed if verdict else None
        moved = f" ({change.decision}d from {change.from_tier})" if change else ""
        out.print(f"[bold]{state.tier.name}[/]{' (pinned)' if state.pinned else ''}{moved}  {name}")
        if verdict is not None and verdict.measures is not None:
            m = verdict.measures
            out.print(f"  judged {verdict.judged} over {m.window_days:g} days: {m.runs} runs, {m.fixes} fixes, "
                      f"fix rate lower bound {_shown(m.fix_rate_lower)}, p95 {_shown(m.p95_latency_s)} s, "
                      f"escaped defects {_shown(m.escaped_defect_rate)}, false successes "
                      f"{_shown(m.false_success_rate)}, ${_shown(m.usd_per_fix)} per fix, "
                      f"{_shown(m.interrupts_per_run)} interrupts per run", highlight=False)
            for breach in verdict.breaches:
                out.print(f"  [yellow]short of the SLA[/]: {breach}", highlight=False)


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


@app.command("outcome")
def outcome_command(
    run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix.")],
    outcome: Annotated[str, typer.Argument(help="merged, rejected, reverted or defect.")],
    reason: Annotated[str, typer.Option("--reason", help="Why, e.g. the revert's commit or the incident.")] = "",
    by: ByOpt = None, repo: RepoOpt = Path("."), db: DbOpt = None,
) -> None:
    """Report what became of a finished run's work; `tether gate` measures escaped defects and false
    successes from these reports.

    Example: tether outcome 20261130-0012 reverted --reason "revert 9f1c2e: broke the nightly export"
    """
    if outcome not in get_args(ev.Outcome):
        raise fail(f"outcome must be one of {', '.join(get_args(ev.Outcome))}, got {outcome!r}")
    with open_ledger(db, repo) as ledger:
        reported = report_outcome(ledger, run_id, outcome, by=by or os_user(), reason=reason)  # type: ignore[arg-type]
    out.print(f"{run_id}: {reported.outcome}, reported by {reported.by}")
