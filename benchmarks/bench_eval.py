"""What an eval adds to each run, and what a second worker buys.

    .venv/bin/python benchmarks/bench_eval.py [--tasks 12]

A suite of tiny tasks solved by a scripted model in one write (so model and command time are near
zero). Baseline: the same runs started directly with the runner, one after another, in one process.
The eval runs them through the queue with 1 and then 2 worker processes, and scores each with the
visible and hidden checks in the sandbox. Figures: seconds per run and the ratio to the baseline;
the eval's overhead per run, which is everything but model time and command time (the checks and
tools the run executes, and the two scoring checks), read from the events and the scores; and the
speed-up from 1 to 2 workers."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tether.evals.matrix import load_configs, open_eval, run_eval, task_policy
from tether.evals.records import EvalRecords
from tether.evals.suite import load_suite, prepare_repo
from tether.ledger import Ledger
from tether.runner import RunSpec, start_run

TASK = """instruction = "Make f square its argument."
visible_check = "python -c 'from f import f; assert f(1) == 1'"
hidden_check = "python -c 'from f import f; assert f(2) == 4'"
"""


def make_suite(root: Path, count: int, script: Path) -> tuple[Path, Path]:
    script.write_text(json.dumps([{"tool_calls": [{"name": "write_file", "arguments": {
        "path": "f.py", "content": "def f(x):\n    return x * x\n"}}]}]))
    for number in range(count):
        folder = root / "suite" / f"t{number:02d}"
        (folder / "repo").mkdir(parents=True)
        (folder / "repo" / "f.py").write_text("def f(x):\n    raise NotImplementedError\n")
        (folder / "task.toml").write_text(TASK)
    config = root / "solve.toml"
    config.write_text(f'[agent]\nmodel = "scripted:{script}"\ncheck_after_write = true\n'
                      '[[checks]]\nname = "visible"\ncommand = "{visible_check}"\n')
    return root / "suite", config


def baseline(root: Path, suite: Path, config: Path) -> float:
    ledger = Ledger(f"sqlite:///{root / 'baseline.db'}")
    configs = load_configs([config])
    started = time.perf_counter()
    for task in load_suite(suite):
        repo = prepare_repo(task, root / "baseline-repos" / task.name)
        summary = start_run(ledger, RunSpec(task.text(), repo, task_policy(configs[0], task)))
        assert summary["status"] == "succeeded", summary
    ledger.close()
    return time.perf_counter() - started


def timed_eval(root: Path, suite: Path, config: Path, workers: int) -> tuple[float, dict]:
    ev = open_eval(root / f"eval-{workers}")
    ev.suite, ev.tasks, ev.configs = suite, load_suite(suite), load_configs([config])
    started = time.perf_counter()
    results = run_eval(ev, workers, lambda _: None)
    assert all(row["passed_hidden"] for row in results["rows"]), results["rows"]
    return time.perf_counter() - started, results


def model_and_command_s(root: Path, workers: int, eval_id: str) -> tuple[float, float]:
    """Seconds of model calls, and of commands (in-run checks and tools, scoring checks), over the eval."""
    ledger = Ledger(open_eval(root / f"eval-{workers}").db_url)
    model = command = 0.0
    for cell in EvalRecords(ledger, eval_id).cells():
        for event in ledger.events(cell.run_id):
            if event.type == "model_response":
                model += event.payload.get("latency_s", 0.0)
            elif event.type in ("check_finished", "tool_result"):
                command += event.payload.get("duration_s", 0.0)
        command += sum(cell.score[check]["duration_s"] for check in ("visible", "hidden")) if cell.score else 0.0
    ledger.close()
    return model, command


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=12)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        suite, config = make_suite(root, args.tasks, root / "turns.json")
        base = baseline(root, suite, config)
        one, results = timed_eval(root, suite, config, 1)
        two, _ = timed_eval(root, suite, config, 2)
        model_s, command_s = model_and_command_s(root, 1, results["eval_id"])
    run_s = sum(row["latency_s"] for row in results["rows"]) / len(results["rows"])
    n = args.tasks
    overhead = (one - model_s - command_s) / n
    table = Table("what", "s per run", "vs baseline", title=f"eval overhead, {n} one-step tasks")
    table.add_row("baseline: runner, in-process, no scoring", f"{base / n:.3f}", "1.00x")
    table.add_row("eval, 1 worker (queue + run + scoring)", f"{one / n:.3f}", f"{one / base:.2f}x")
    table.add_row("  of which the run itself (its events)", f"{run_s:.3f}", f"{run_s * n / base:.2f}x")
    table.add_row("  of which model calls", f"{model_s / n:.3f}", f"{model_s / base:.2f}x")
    table.add_row("  of which commands (run's checks, scoring checks)", f"{command_s / n:.3f}",
                  f"{command_s / base:.2f}x")
    table.add_row("  the rest: the eval's overhead", f"{overhead:.3f}", f"{overhead * n / base:.2f}x")
    table.add_row("eval, 2 workers", f"{two / n:.3f}", f"{two / base:.2f}x")
    console.print(table)
    console.print(f"eval overhead per run (1 worker, all but model and command time): {overhead:.3f} s; "
                  f"speed-up from 1 to 2 workers: {one / two:.2f}x")


if __name__ == "__main__":
    main()
