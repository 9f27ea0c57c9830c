"""Replay speed: steps per second of `tether replay`, excluding the time of the commands it
re-executes, against the recording run measured the same way.

    .venv/bin/python benchmarks/bench_replay.py [--steps 200]

Target: over 500 steps/s on SQLite, excluding command time."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from bench_run import make_repo, timed

from tether.ledger import Ledger
from tether.policy import parse_policy
from tether.replay import compare, replay_run, steps_of
from tether.runner import RunSpec, start_run
from tether.workspace.worktree import Worktree

POLICY = ("[budget]\nmax_steps = 100000\nmax_tool_calls = 100000\n[sandbox]\nmode = 'none'\n"
          "[brakes]\nrepeat_max = 1000000\nrepeat_window = 1000000\n")


def turns(steps: int) -> list[dict]:
    kinds = [
        lambda i: {"name": "write_file", "arguments": {"path": f"f{i % 7}.txt", "content": f"{i}\n"}},
        lambda i: {"name": "read_file", "arguments": {"path": f"f{(i - 1) % 7}.txt"}},
        lambda i: {"name": "bash", "arguments": {"command": "true"}},
    ]
    return [{"tool_calls": [kinds[i % 3](i)], "usage": {"input_tokens": 10, "output_tokens": 5}}
            for i in range(steps)]


def command_time(ledger: Ledger, run_id: str) -> float:
    return sum(e.payload.get("duration_s", 0.0) for e in ledger.events(run_id) if e.type == "tool_result")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = make_repo(root)
        script = root / "turns.json"
        script.write_text(json.dumps(turns(args.steps)))
        ledger = Ledger(f"sqlite:///{root / 'bench.db'}")
        policy = parse_policy(POLICY, Path("bench.toml"))
        started = time.perf_counter()
        recorded = start_run(ledger, RunSpec("bench", repo, policy, model=f"scripted:{script}"))
        record_s = time.perf_counter() - started - command_time(ledger, recorded["run_id"])

        git_time: dict[str, float] = defaultdict(float)
        undo = [timed(Worktree, "snapshot", git_time), timed(Worktree, "diff", git_time)]
        started = time.perf_counter()
        report = replay_run(ledger, recorded["run_id"])
        replay_wall = time.perf_counter() - started
        for restore in undo:
            restore()
        if not report.identical or report.steps_compared != args.steps:
            raise SystemExit(f"replay was not identical over {args.steps} steps: {report.divergences[:1]}")
        replay_s = replay_wall - command_time(ledger, report.replay_run_id)
        git_s = git_time["snapshot"] + git_time["diff"]

        original = steps_of(ledger.events(recorded["run_id"]))
        replayed = steps_of(ledger.events(report.replay_run_id))
        started = time.perf_counter()
        compare(original, replayed, first_only=True)
        compare_s = time.perf_counter() - started
        ledger.close()

    n = args.steps
    table = Table("measure", "steps/s", "ms per step", title=f"replay of a {n}-step run (SQLite)")
    table.add_row("recording run, excluding command time", f"{n / record_s:,.0f}", f"{record_s / n * 1e3:.2f}")
    table.add_row("replay, excluding command time", f"{n / replay_s:,.0f}", f"{replay_s / n * 1e3:.2f}")
    table.add_row("  of which git snapshots", "", f"{git_s / n * 1e3:.2f}")
    table.add_row("replay, excluding command and git time", f"{n / (replay_s - git_s):,.0f}",
                  f"{(replay_s - git_s) / n * 1e3:.2f}")
    table.add_row("comparison of the two event logs", f"{n / compare_s:,.0f}", f"{compare_s / n * 1e3:.3f}")
    console.print(table)
    console.print(f"replay / recording time: {replay_s / record_s:.2f}x (target: over 500 steps/s)")


if __name__ == "__main__":
    main()
