"""`tether brakes calibrate`: the brakes fitted on one agent's own runs, proposed as policy (and, with
--canary, tried on a share of the queued tasks before they replace the current ones)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from tether.cli.common import DbOpt, JsonOpt, RepoOpt, app, err, fail, open_ledger, out

brakes_app = typer.Typer(help="Brakes fitted on an agent's own runs. Example: tether brakes calibrate --agent "
                              "claude-code", no_args_is_help=True)
app.add_typer(brakes_app, name="brakes")


@brakes_app.command("calibrate")
def calibrate_command(
    agent: Annotated[str | None, typer.Option(help="The agent (as `tether brakes calibrate` lists them); default: "
                                                   "the store's only one.")] = None,
    since: Annotated[str | None, typer.Option(help="Only runs started since (30d, 12h).")] = None,
    target: Annotated[float, typer.Option("--target-false-stops", help="The share of resolved runs a brake may "
                                                                        "stop.")] = 0.02,
    canary: Annotated[bool, typer.Option("--canary", help="Start a canary with the proposed policy.")] = False,
    share: Annotated[float, typer.Option(help="The canary's share of the queued tasks.")] = 0.2,
    policy: Annotated[Path | None, typer.Option("--policy", help="The policy the proposal goes into (default: "
                                                                 "tether.toml).")] = None,
    repo: RepoOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False,
) -> None:
    """Fit the brakes on the store's finished runs of one agent (live, through the gateway, or
    imported): fit on the older half, measured on the newer, refused when too few resolved runs
    bound the false stops. Prints the proposed policy with what it saved and stopped.

    Example: tether brakes calibrate --agent mini-swe-agent --target-false-stops 0.02
    """
    from tether.backtest.calibrate import calibrate, recorded_runs
    from tether.gc import parse_age

    if not 0 < target < 1:
        raise fail(f"--target-false-stops must be between 0 and 1, got {target}")
    try:
        cutoff = time.time() - parse_age(since) if since else None
    except ValueError as exc:
        raise fail(f"--since: {exc}") from exc
    with open_ledger(db, repo) as ledger:
        runs = recorded_runs(ledger, cutoff)
        agents = sorted({run.agent for run in runs})
        if agent is None:
            if len(agents) != 1:
                raise fail(f"name the agent with --agent: the store has runs of {', '.join(agents) or 'none'}")
            agent = agents[0]
        result = calibrate(runs, agent, target)
        started = _canary(ledger, result, policy, repo, share) if canary else None
    proposal = result.proposal
    if as_json:
        out.print_json(json.dumps({**result.as_dict(), "canary": started}, default=str))
        return
    test = proposal["test"]
    low, high = test["saved_share_ci"]
    fs_low, fs_high = test["false_stop_ci"]
    err.print(f"{result.agent}: {result.runs} finished runs, {result.labelled} labelled; fitted on the older half "
              f"({result.resolved['fit']} resolved), measured on the newer ({result.resolved['test']} resolved), "
              f"by {'the stop score' if result.chosen == 'score' else 'thresholds'}")
    out.print(proposal["policy"], markup=False, highlight=False)
    err.print(f"on the newer runs: saves {test['saved_share']:.1%} ({low:.1%}-{high:.1%}) of the failed runs' USD, "
              f"stops {test['false_stops']} of {test['resolved']} resolved runs ({test['false_stop_rate']:.1%}, "
              f"{fs_low:.1%}-{fs_high:.1%})")
    if started:
        err.print(f"canary {started}: {share:.0%} of the queued tasks run with the proposal (tether canary status)")


def _canary(ledger, result, policy_path: Path | None, repo: Path, share: float) -> str:  # type: ignore[no-untyped-def]
    """Write the current policy with the proposal in it, and start a canary with it as the candidate."""
    import tomllib

    from tether.gate.canary import start_canary
    from tether.ledger.fleet import Fleet
    from tether.people import os_user
    from tether.policy import find_policy
    from tether.policy.dump import policy_toml
    from tether.policy.schema import Policy
    from tether.workspace.git import repo_root

    root = repo_root(repo.resolve())
    org = Fleet(ledger).org_policy()
    current, _ = find_policy(root, policy_path, org)
    proposed = tomllib.loads(result.proposal["policy"])
    data = current.model_dump(mode="json")
    for section, values in proposed.items():
        data[section] = {**data.get(section, {}), **values}
    candidate = root / ".tether" / f"calibrated-{result.agent.replace(' ', '-').replace(':', '-')}.toml"
    candidate.write_text(policy_toml(Policy.model_validate(data)))
    return start_canary(ledger, candidate, share=share, repo=str(root), by=os_user(), org_text=org).id
