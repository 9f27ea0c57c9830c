"""What the permission gate adds to starting a run, with a long history to judge.

    .venv/bin/python benchmarks/bench_gate.py [--history 1000] [--runs 10]

With tiers in the org policy, a worker judges the run's (repository, configuration) before every
run (gate/ladder.py `evaluate`, promotion off): it reads every finished run of the window. This
makes a store holding `--history` finished runs of the same configuration (each with 20 model
responses, as a worker records them), then times `--runs` real runs of the scripted model on the
raindrops sample (a one-step run: a submit) without tiers (the baseline) and with a three-tier
ladder, and the gate's own evaluation alone. Figures: median seconds, and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table
from sample_repo import sample_repo

from tether.gate.ladder import evaluate
from tether.ledger import Ledger
from tether.ledger import events as ev
from tether.ledger.fleet import ORG_POLICY, Fleet
from tether.ledger.queries import summarize
from tether.policy import parse_policy
from tether.policy.load import layer_policy, org_tiers
from tether.policy.tiers import configuration_of
from tether.runner import RunSpec, start_run

LADDER = """
[[tiers]]
name = "observe"
[[tiers]]
name = "branch"
[tiers.enter]
min_runs = 20
min_fix_rate = 0.5
[[tiers]]
name = "pull_request"
delivery = "pull_request"
[tiers.enter]
min_runs = 50
min_fix_rate = 0.7
max_escaped_defect_rate = 0.05
"""


def _history(ledger: Ledger, repo: str, configuration: str, count: int) -> None:
    for n in track(range(count), description="history", transient=True):
        run_id = f"history-{n:05d}"
        status = "succeeded" if n % 4 else "failed"
        ledger.create_run(run_id, repo=repo, instruction="a task", source="queue", status=status)
        start = time.time() - 600
        batch: list[tuple[ev.Payload, float]] = [(ev.RunStarted(task="a task", repo=repo, configuration=configuration,
                                                                policy={"delivery": {"mode": "branch"}}), start)]
        batch += [(ev.ModelResponse(step=i, model="m", content="", tool_calls=[], usage=ev.RecordedUsage(),
                                    cost_usd=0.01, price_known=True, latency_s=1.0), start + i) for i in range(20)]
        batch.append((ev.RunFinished(status=status, reason="done"), start + 300))
        ledger.record_many(run_id, batch)
        ledger.update_run(run_id, summary=summarize(ledger.get_run(run_id), ledger.events(run_id)))


def _timed_runs(ledger: Ledger, repo: Path, model: str, policy_text: str, count: int) -> list[float]:
    org = Fleet(ledger).org_policy()
    policy = layer_policy(org, policy_text, repo / "tether.toml") if org else parse_policy(policy_text, repo)
    times = []
    for _ in range(count):
        began = time.perf_counter()
        start_run(ledger, RunSpec("a task", repo, policy, model=model))
        times.append(time.perf_counter() - began)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--history", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = sample_repo(root)
        turns = root / "turns.json"
        turns.write_text('[{"tool_calls": [{"name": "submit", "arguments": {"summary": "done"}}]}]')
        model = f"scripted:{turns}"
        ledger = Ledger(f"sqlite:///{root / 'tether.db'}")
        configuration = configuration_of(parse_policy("", repo), model, "harness")
        _history(ledger, str(repo), configuration, args.history)
        baseline = _timed_runs(ledger, repo, model, "", args.runs)
        Fleet(ledger).set_setting(ORG_POLICY, LADDER)
        gated = _timed_runs(ledger, repo, model, "", args.runs)
        tiers = org_tiers(LADDER)
        judged = []
        for _ in range(args.runs):
            began = time.perf_counter()
            evaluate(ledger, tiers, str(repo), configuration, by="bench", promote=False)
            judged.append(time.perf_counter() - began)
    base = statistics.median(baseline)
    table = Table("what", "median s", "vs a run without tiers",
                  title=f"{args.runs} runs each, {args.history} finished runs in the window")
    for name, times in (("run, no tiers (baseline)", baseline), ("run, judged by the gate first", gated),
                        ("the gate's judgement alone", judged)):
        table.add_row(name, f"{statistics.median(times):.4f}", f"{statistics.median(times) / base:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
