"""How often a canary promotes a candidate that is not better, and how many tasks it takes to decide.

Simulated tasks with known true fix rates: the current configuration fixes `--base` of them, the
candidate the same, 10 points more, or 10 points fewer. Each task is routed to the candidate with
probability `--share`, finishes as a fix or not with its arm's rate, and costs the same for both arms
(uniform $0.05-$0.15, so only the fix rate decides); after every task the canary's own rule
(`gate.canary.decide` over `gate.sequential.DifferenceSequence`) is asked for a decision, exactly as
a worker asks it. A repetition ends at the first decision or at `--tasks`.

    .venv/bin/python benchmarks/bench_canary.py [--tasks 2000] [--reps 200] [--share 0.2] [--base 0.5]

Prints, per scenario, the share of repetitions that promoted, rolled back and ran out, and the
median tasks to a decision; the false-promotion rate is the promoted share when the candidate is not
better (target: at most 5%).
"""

from __future__ import annotations

import argparse
import random
import statistics

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from tether.gate.canary import ArmMeasures, Point, decide
from tether.gate.sequential import DifferenceSequence
from tether.ledger import events as ev
from tether.stats import wilson


def one_canary(rng: random.Random, rule: ev.CanaryStarted, rates: dict[bool, float]) -> tuple[str, int]:
    fix, cost = DifferenceSequence(rule.share, rule.alpha), DifferenceSequence(rule.share, rule.alpha)
    tasks, fixes, usd = {True: 0, False: 0}, {True: 0, False: 0}, {True: 0.0, False: 0.0}
    for t in range(1, rule.max_tasks + 1):
        arm = rng.random() < rule.share
        fixed = rng.random() < rates[arm]
        spent = rng.uniform(0.05, 0.15)
        fix.add(arm, float(fixed))
        cost.add(arm, spent)
        tasks[arm] += 1
        fixes[arm] += fixed
        usd[arm] += spent
        if t < rule.min_tasks:
            continue
        fix_interval, cost_interval = fix.interval(), cost.interval()
        verdict = decide(rule, t, Point(t, fix.estimate or 0.0, *fix_interval) if fix_interval else None,
                         Point(t, cost.estimate or 0.0, *cost_interval) if cost_interval else None,
                         ArmMeasures(tasks[True], fixes[True], usd[True]),
                         ArmMeasures(tasks[False], fixes[False], usd[False]))
        if verdict is not None:
            return verdict[0], t
    return "exhausted", rule.max_tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--share", type=float, default=0.2)
    parser.add_argument("--base", type=float, default=0.5)
    parser.add_argument("--min-tasks", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20261130)
    args = parser.parse_args()
    rule = ev.CanaryStarted(candidate="", candidate_path="cand.toml", candidate_sha256="", share=args.share, repo=None,
                            alpha=0.05, min_tasks=args.min_tasks, max_tasks=args.tasks, cost_tolerance=0.2, by="bench")
    scenarios = {"equal": 0.0, "+10 points": 0.10, "-10 points": -0.10}
    rng = random.Random(args.seed)
    results: dict[str, list[tuple[str, int]]] = {}
    with Progress(transient=True) as progress:
        bar = progress.add_task("canaries", total=len(scenarios) * args.reps)
        for name, lift in scenarios.items():
            rates = {False: args.base, True: args.base + lift}
            results[name] = []
            for _ in range(args.reps):
                results[name].append(one_canary(rng, rule, rates))
                progress.advance(bar)
    table = Table("candidate", "promoted", "rolled back", "ran out", "median tasks to a decision",
                  title=f"{args.reps} canaries per row, {args.tasks} tasks at most, share {args.share}, "
                        f"current fix rate {args.base}, min_tasks {args.min_tasks}, alpha 0.05")
    for name, outcomes in results.items():
        count = {decision: sum(d == decision for d, _ in outcomes) for decision in ("promote", "rollback", "exhausted")}
        decided = [t for d, t in outcomes if d != "exhausted"]
        table.add_row(name, *(f"{count[d] / args.reps:.1%}" for d in ("promote", "rollback", "exhausted")),
                      f"{statistics.median(decided):.0f}" if decided else "-")
    console = Console()
    console.print(table)
    equal = sum(d == "promote" for d, _ in results["equal"])
    low, high = wilson(equal, args.reps)
    console.print(f"false-promotion rate, candidate equal: {equal / args.reps:.1%} (95% interval {low:.1%}-{high:.1%}; "
                  f"target at most 5%); candidate worse: "
                  f"{sum(d == 'promote' for d, _ in results['-10 points']) / args.reps:.1%}")


if __name__ == "__main__":
    main()
