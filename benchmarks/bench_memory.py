"""Memory on against off, on the same tasks run twice, with the local model (issue 33).

Each task is run four times, in two arms of two passes, each arm in a repository of its own:

    off-1, off-2   [memory] off: the second pass knows nothing of the first
    on-1, on-2     [memory] on with reflect: the first pass may keep notes (the `REMEMBER:` action,
                   and one note asked for when the run ends); the second is given them at its start

The question is whether a second pass given the first pass's notes does better than a second pass
without them: on-2 against off-2, pair by pair (same task), for solved (McNemar's exact test, the
difference with a bootstrap interval), steps and tokens (mean paired difference, bootstrap 95%).
Steps and tokens count the task's work only: the reflection after the end (recorded as
`reflecting`) is left out, so the arms are compared on the same work.

The tasks: the first N Exercism tasks (by a hash of their names, the fixed sample of
bench_plain_prompt.py) that are not in aider-polyglot-python, scored on their hidden tests; and one
shared repository, toolz with a seeded bug in `first`, scored by its own test file.

    .venv/bin/python benchmarks/bench_memory.py [--tasks 8] [--model local:qwen2.5-coder-1.5b]
        [--no-repo-task] [--out docs/memory]

Writes results.json and report.html (the eval report's tables and plots) to --out after every task.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_plain_prompt import DATA, sample, task_repo
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from tether.evals.compare import compare_configs
from tether.evals.exercism import _exercises, _passes, import_task
from tether.evals.metrics import cell_row, summarize_config
from tether.evals.report import write_reports
from tether.evals.suite import load_task
from tether.ledger import Ledger
from tether.ledger import events as ev
from tether.policy import parse_policy
from tether.runner import RunSpec, start_run
from tether.stats import bootstrap_mean_diff
from tether.workspace.git import git

SHARED = DATA.parents[1]
POLYGLOT = SHARED / "tasks" / "aider-polyglot-python"
TOOLZ = SHARED / "repos" / "toolz.bundle"
ARMS = ("off", "on")
CONFIGS = ["off-1", "off-2", "on-1", "on-2"]
POLICY = """
[agent]
check_after_write = true
[budget]
max_steps = 6
max_wall_s = 150
[writes]
max_files = 2
max_lines = 150
[approvals]
unattended = "deny"
[memory]
enabled = {enabled}
reflect = true
[[checks]]
name = "tests"
command = "{check}"
timeout_s = 60
"""
TOOLZ_TASK = ("The test test_first in toolz/tests/test_itertoolz.py fails: `first` in toolz/itertoolz.py returns "
              "the second item of a sequence. Fix the bug in toolz/itertoolz.py (run the tests with "
              "`python -m pytest -q toolz/tests/test_itertoolz.py`).")
TOOLZ_CHECK = "python -m pytest -q -p no:cacheprovider toolz/tests/test_itertoolz.py"


def policy(arm: str, check: str) -> Any:
    return parse_policy(POLICY.format(enabled="true" if arm == "on" else "false", check=check),
                        Path(f"memory-{arm}.toml"))


def task_work(events: list) -> list:
    """The events of the task's work: up to the reflection after its end (the end itself kept)."""
    for index, event in enumerate(events):
        if isinstance(event.data, ev.Reflecting):
            return [*events[:index], *[e for e in events[index:] if isinstance(e.data, ev.RunFinished)]]
    return events


def row_of(ledger: Ledger, task: str, config: str, run_id: str, visible: bool, hidden: bool) -> dict[str, Any]:
    run = ledger.get_run(run_id)
    events = ledger.events(run_id)
    row = cell_row(task, config, 0, run, task_work(events), {"visible": {"passed": visible},
                                                              "hidden": {"passed": hidden}})
    row["notes_kept"] = [e.data.text for e in events if isinstance(e.data, ev.MemoryWritten)]
    started = events[0].data
    row["notes_given"] = len(started.memory or []) if isinstance(started, ev.RunStarted) else 0
    return row


def exercism_rows(folder: Path, meta: dict, model: str, ledger: Ledger, work: Path) -> list[dict[str, Any]]:
    task = load_task(folder)
    rows = []
    for arm in ARMS:
        repo = task_repo(folder, work / arm / meta["name"])
        for number in (1, 2):
            summary = start_run(ledger, RunSpec(task.instruction, repo, policy(arm, task.visible_check), model=model))
            delivered = work / arm / f"{meta['name']}-{number}.py"
            delivered.write_text(git(repo, "show", f"{summary['branch']}:{meta['solution_files'][0]}"))
            visible, hidden = (_passes(folder, meta["solution_files"][0], delivered, meta["test_files"][0], hidden=h)
                               for h in (False, True))
            rows.append(row_of(ledger, meta["name"], f"{arm}-{number}", summary["run_id"], visible, hidden))
    return rows


def toolz_rows(model: str, ledger: Ledger, work: Path) -> list[dict[str, Any]]:
    rows = []
    for arm in ARMS:
        repo = work / arm / "toolz"
        subprocess.run(["git", "clone", "-q", str(TOOLZ), str(repo)], check=True)
        source = repo / "toolz" / "itertoolz.py"
        source.write_text(source.read_text().replace("    return next(iter(seq))\n",
                                                     "    return next(iter(seq[1:]))\n", 1))
        git(repo, "-c", "user.email=s@e", "-c", "user.name=seed", "commit", "-qam", "seeded bug")
        for number in (1, 2):
            summary = start_run(ledger, RunSpec(TOOLZ_TASK, repo, policy(arm, TOOLZ_CHECK), model=model))
            solved = summary["status"] == "succeeded"  # the required check passed on the delivered tree
            rows.append(row_of(ledger, "toolz:first", f"{arm}-{number}", summary["run_id"], solved, solved))
    return rows


def paired(rows: list[dict[str, Any]], field: str, first: str, second: str) -> dict[str, Any] | None:
    by_task: dict[str, dict[str, float]] = {}
    for row in rows:
        by_task.setdefault(row["task"], {})[row["config"]] = float(row[field])
    pairs = [(cells[first], cells[second]) for cells in by_task.values() if first in cells and second in cells]
    if not pairs:
        return None
    mean, low, high = bootstrap_mean_diff(pairs)
    return {"mean_diff": mean, "low": low, "high": high, "pairs": len(pairs)}


def results_of(rows: list[dict[str, Any]], model: str) -> dict[str, Any]:
    summary = {config: summarize_config([r for r in rows if r["config"] == config]) for config in CONFIGS}
    for config in CONFIGS:
        own = [r for r in rows if r["config"] == config]
        summary[config]["steps_per_task"] = sum(r["steps"] for r in own) / len(own) if own else None
        summary[config]["notes_kept"] = sum(len(r["notes_kept"]) for r in own)
        summary[config]["notes_given"] = sum(r["notes_given"] for r in own)
    return {
        "eval_id": f"bench_memory ({model})", "suite": "exercism-python (not polyglot) + toolz seeded bug",
        "repeats": 1, "rows": rows, "summary": summary,
        "comparisons": [compare_configs(rows, "off-2", "on-2"), compare_configs(rows, "off-1", "on-1"),
                        compare_configs(rows, "on-1", "on-2")],
        "second_pass": {field: paired(rows, field, "off-2", "on-2") for field in ("steps", "tokens", "passed_hidden")},
    }


def exercism_sample(count: int) -> list[dict]:
    polyglot = {meta["name"] for meta in _exercises(POLYGLOT)} if POLYGLOT.is_dir() else set()
    metas = {meta["name"]: meta for meta in _exercises(DATA)}
    return [metas[name] for name in sample(len(metas)) if name not in polyglot][: count * 2]  # some are not kept


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=8, help="Exercism tasks (the toolz task comes on top)")
    parser.add_argument("--model", default="local:qwen2.5-coder-1.5b")
    parser.add_argument("--no-repo-task", action="store_true", help="leave out the toolz task")
    parser.add_argument("--out", type=Path, help="directory for results.json and report.html")
    args = parser.parse_args()
    console = Console()
    if not DATA.is_dir():
        sys.exit(f"no Exercism tasks at {DATA}")
    rows: list[dict[str, Any]] = []
    total = args.tasks + (0 if args.no_repo_task else 1)
    with tempfile.TemporaryDirectory() as tmp:
        suite, work = Path(tmp) / "suite", Path(tmp) / "work"
        ledger = Ledger(f"sqlite:///{Path(tmp) / 'bench.db'}")
        with Progress(console=console) as progress:
            job = progress.add_task("tasks", total=total)
            jobs: list[tuple[str, Any]] = [] if args.no_repo_task else [("toolz:first", None)]
            jobs += [(meta["name"], meta) for meta in exercism_sample(args.tasks)]
            done = 0
            for name, meta in jobs:
                if done >= total:
                    break
                if meta is None:
                    task_rows = toolz_rows(args.model, ledger, work)
                else:
                    if not import_task(DATA / meta["dir"], meta, suite, validate=True).kept:
                        continue
                    task_rows = exercism_rows(suite / name, meta, args.model, ledger, work)
                rows.extend(task_rows)
                done += 1
                progress.advance(job)
                console.print(f"{done}/{total} {name}: " + ", ".join(
                    f"{r['config']} {'solved' if r['passed_hidden'] else 'failed'} {r['steps']} steps "
                    f"{r['tokens']} tok ({len(r['notes_kept'])} kept, {r['notes_given']} given)" for r in task_rows))
                if args.out:
                    write_reports(results_of(rows, args.model), args.out,
                                  f"{args.model}: memory off and on, each task run twice")
        ledger.close()
    results = results_of(rows, args.model)
    table = Table("config", "solved", "95% interval", "steps/task", "tokens/task", "notes kept", "notes given",
                  title=f"{args.model}: memory off and on, {done} tasks each run twice")
    for config, found in results["summary"].items():
        low, high = found["pass_rate_ci"]
        table.add_row(config, f"{found['solved']}/{found['runs']}", f"{low:.0%}-{high:.0%}",
                      f"{found['steps_per_task']:.1f}", f"{found['tokens_per_task']:,.0f}", str(found["notes_kept"]),
                      str(found["notes_given"]))
    console.print(table)
    for field, diff in results["second_pass"].items():
        if diff:
            console.print(f"second pass, on - off, {field}: {diff['mean_diff']:+.2f} "
                          f"[{diff['low']:+.2f}, {diff['high']:+.2f}] over {diff['pairs']} tasks")
    first = results["comparisons"][0]
    console.print(f"solved on the second pass: on only {first['only_second_passed']}, off only "
                  f"{first['only_first_passed']}, McNemar exact p = {first['mcnemar_p']:.3f}")


if __name__ == "__main__":
    main()
