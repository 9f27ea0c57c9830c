"""The local model asked plainly, against Tether's agent on the same tasks, scored on the hidden tests.

The baseline of issue 19: each Exercism task's own instruction (the text Tether's agent gets,
with the stub in it), then "answer with the complete solution file in one python block", one
greedy reply, no tools; the block is the solution. `plain+files` is that prompt with the files the
task names shown after it, as Tether's agent is shown them ([agent] show_named_files), so what the
files give is told apart from what the loop gives. Tether's configurations run the same tasks in
the same process:

    single     one step (`max_steps = 1`), no checks: the first reply is the answer
    guarded    the harness: the visible tests as a required check after every write, write caps,
               the test files protected (nobody attends, so a request is denied), 8 steps, 300 s
    attempts   `[agent] attempts = 4` of one step each, the visible tests as the required check:
               the first attempt whose file passes them is delivered; 300 s for all four
    factory    `architecture = "factory"`: 4 candidates of one step each, scored by the visible tests;
               among those that pass, the model writes judge inputs from the task and the largest
               group of candidates that behave alike on them is delivered; 300 s for it all. The
               spec is not put to a person (nobody attends a benchmark), and candidates that all
               disagree are delivered (the first), not sent to one

Everything is scored by the task's full (hidden) test file, and each configuration is compared with
the plain prompt pair by pair (McNemar's exact test, bootstrap intervals), with the eval's own
metrics, table and plots (`results.json` and `report.html` in --out, rewritten after every task,
so a long run that is stopped keeps what it measured).

    .venv/bin/python benchmarks/bench_plain_prompt.py [--tasks 40] [--model local:qwen2.5-coder-1.5b]
        [--configs plain,plain+files,single,guarded,attempts,factory] [--out DIR] [--not-in-aider]

With --out holding the results of a run that was stopped, it goes on from the next task.

The tasks are the first N (by a hash of their names, so a fixed sample) that import-exercism keeps;
with --not-in-aider, only those that are not in `aider-polyglot-python` (a set chosen because models
fail it: no configuration solved one of its tasks in docs/local-agent-vs-plain).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from tether.agents.context import named_files_context, with_context
from tether.evals.compare import compare_configs
from tether.evals.exercism import _exercises, _passes, import_task
from tether.evals.metrics import cell_row, summarize_config
from tether.evals.report import write_reports
from tether.evals.suite import load_task
from tether.ledger import Ledger
from tether.models import make_provider
from tether.policy import parse_policy
from tether.runner import RunSpec, start_run
from tether.workspace.git import git

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tasks" / "exercism-python"
PLAIN_CONFIGS = ("plain", "plain+files")
PLAIN = "\n\nAnswer with the complete solution file in one python block."
_PYTHON_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)\n?```", re.DOTALL)
_GUARD = """
[writes]
max_files = 2
max_lines = 150
[ownership.protected]
"*_test.py" = ["@maintainers"]
[approvals]
unattended = "deny"
[[checks]]
name = "visible tests"
command = "{visible_check}"
timeout_s = 60
"""
# 300 s a run, as the eval of docs/eval-exercism-local gave each run.
CONFIGS = {
    "single": "[budget]\nmax_steps = 1\n",
    "guarded": "[agent]\ncheck_after_write = true\n[budget]\nmax_steps = 8\nmax_wall_s = 300\n" + _GUARD,
    "attempts": "[agent]\ncheck_after_write = true\nattempts = 4\n[budget]\nmax_steps = 1\nmax_wall_s = 300\n" + _GUARD,
    "factory": '[agent]\narchitecture = "factory"\ncheck_after_write = true\n[factory]\ncandidates = 4\n'
               'approve_spec = false\non_disagreement = "deliver"\n[budget]\nmax_steps = 1\nmax_wall_s = 300\n'
               + _GUARD,
}
AIDER = DATA.parent / "aider-polyglot-python"


def sample(count: int, not_in_aider: bool = False) -> list[str]:
    excluded = {meta["name"] for meta in _exercises(AIDER)} if not_in_aider else set()
    names = [meta["name"] for meta in _exercises(DATA) if meta["name"] not in excluded]
    return sorted(names, key=lambda name: hashlib.sha256(name.encode()).hexdigest())[:count]


def task_repo(folder: Path, repo: Path) -> Path:
    """A git repository at `repo` holding the task's files in one commit."""
    repo.mkdir(parents=True)
    for path in (folder / "repo").iterdir():
        (repo / path.name).write_bytes(path.read_bytes())
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=b@e", "-c", "user.name=bench", "commit", "-qm", "task")
    return repo


def plain_row(config: str, provider: Any, folder: Path, meta: dict, instruction: str) -> dict[str, Any]:
    """One greedy reply to the plain prompt (`plain+files`: with the files the task names shown, as
    Tether's agent is shown them), through the same llama.cpp instance Tether uses, as an eval row
    (the eval's fields that a reply without a run cannot have are zero)."""
    if config == "plain+files":
        with tempfile.TemporaryDirectory() as tmp:
            repo = task_repo(folder, Path(tmp) / "repo")
            instruction = with_context(instruction, named_files_context(repo, "HEAD", instruction))
    started = time.perf_counter()
    out = provider.llm.create_chat_completion(
        messages=[{"role": "user", "content": instruction + PLAIN}], max_tokens=1024, temperature=0.0)
    latency = time.perf_counter() - started
    blocks = _PYTHON_BLOCK.findall(out["choices"][0]["message"].get("content") or "")
    visible = hidden = False
    if blocks:
        solution = folder / "plain-solution.py"
        solution.write_text(max(blocks, key=len) + "\n")
        visible, hidden = (_passes(folder, meta["solution_files"][0], solution, meta["test_files"][0], hidden=h)
                           for h in (False, True))
    usage = out.get("usage") or {}
    return {"task": meta["name"], "config": config, "repeat": 0, "run_id": "", "status": "answered",
            "stop_rule": "", "passed_visible": visible, "passed_hidden": hidden,
            "escaped_defect": visible and not hidden, "false_success": False, "latency_s": round(latency, 3),
            "tokens": int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0)), "usd": 0.0,
            "steps": 1, "interrupts": 0, "stops": 0, "rework": 0, "rework_lines": 0, "cap_hits": 0}


def tether_row(config: str, folder: Path, meta: dict, model: str, ledger: Ledger, work: Path) -> dict[str, Any]:
    task = load_task(folder)
    repo = task_repo(folder, work / config / meta["name"])
    policy = parse_policy(CONFIGS[config].replace("{visible_check}", task.visible_check), Path(f"{config}.toml"))
    summary = start_run(ledger, RunSpec(task.instruction, repo, policy, model=model))
    delivered = work / config / f"{meta['name']}-solution.py"
    delivered.write_text(git(repo, "show", f"{summary['branch']}:{meta['solution_files'][0]}"))
    score = {kind: {"passed": _passes(folder, meta["solution_files"][0], delivered, meta["test_files"][0],
                                      hidden=kind == "hidden")} for kind in ("visible", "hidden")}
    run = ledger.get_run(summary["run_id"])
    return cell_row(meta["name"], config, 0, run, ledger.events(run.id), score)


def outcome(row: dict[str, Any]) -> str:
    return "solved" if row["passed_hidden"] else "visible only" if row["passed_visible"] else "failed"


def results_of(rows: list[dict[str, Any]], configs: list[str], model: str) -> dict[str, Any]:
    summary = {config: summarize_config([r for r in rows if r["config"] == config]) for config in configs}
    return {"eval_id": f"bench_plain_prompt ({model})", "suite": "exercism-python (hash sample)", "repeats": 1,
            "rows": rows, "summary": summary,
            "comparisons": [compare_configs(rows, configs[0], other) for other in configs[1:]]}


def measured_before(out: Path | None, configs: list[str]) -> list[dict[str, Any]]:
    """The rows an earlier, stopped run wrote to `out` (so a long run goes on where it stopped)."""
    if out is None or not (out / "results.json").is_file():
        return []
    earlier = json.loads((out / "results.json").read_text(encoding="utf-8"))
    if list(earlier["summary"]) != configs:
        sys.exit(f"{out}/results.json measured {', '.join(earlier['summary'])}, not {', '.join(configs)}: "
                 "use another --out")
    return earlier["rows"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--model", default="local:qwen2.5-coder-1.5b")
    parser.add_argument("--configs", default="plain,plain+files,single,guarded,attempts")
    parser.add_argument("--out", type=Path, help="directory for results.json and report.html")
    parser.add_argument("--not-in-aider", action="store_true", help="only tasks not in aider-polyglot-python")
    args = parser.parse_args()
    configs = args.configs.split(",")
    unknown = [c for c in configs if c not in PLAIN_CONFIGS and c not in CONFIGS]
    if unknown:
        sys.exit(f"--configs: unknown {', '.join(unknown)}; known: {', '.join([*PLAIN_CONFIGS, *CONFIGS])}")
    console = Console()
    if not DATA.is_dir():
        sys.exit(f"no Exercism tasks at {DATA}")
    provider = make_provider(args.model)
    metas = {meta["name"]: meta for meta in _exercises(DATA)}
    rows = measured_before(args.out, configs)
    measured = {row["task"] for row in rows}
    done = len(measured)
    with tempfile.TemporaryDirectory() as tmp:
        suite, work = Path(tmp) / "suite", Path(tmp) / "work"
        ledger = Ledger(f"sqlite:///{Path(tmp) / 'bench.db'}")
        with Progress(console=console) as progress:
            job = progress.add_task("tasks", total=args.tasks, completed=done)
            for name in sample(len(metas), args.not_in_aider):
                if done >= args.tasks:
                    break
                if name in measured:
                    continue
                meta = metas[name]
                if not import_task(DATA / meta["dir"], meta, suite, validate=True).kept:
                    continue  # a refactoring exercise, or one whose stub passes
                folder = suite / name
                task_rows = [plain_row(config, provider, folder, meta, load_task(folder).instruction)
                             if config in PLAIN_CONFIGS
                             else tether_row(config, folder, meta, args.model, ledger, work)
                             for config in configs]
                rows.extend(task_rows)
                done += 1
                progress.advance(job)
                # One line a task, so a log (no terminal, no bar) shows progress too.
                console.print(f"{done}/{args.tasks} {name}: "
                              + ", ".join(f"{row['config']} {outcome(row)}" for row in task_rows))
                if args.out:
                    write_reports(results_of(rows, configs, args.model), args.out,
                                  f"{args.model}: a plain prompt against Tether on {done} Exercism tasks")
        ledger.close()
    results = results_of(rows, configs, args.model)
    table = Table("how the model was asked", "solved", "95% interval", "tokens per task", "seconds p50",
                  title=f"{args.model} on {done} Exercism tasks, scored on the hidden tests")
    for config, found in results["summary"].items():
        low, high = found["pass_rate_ci"]
        table.add_row(config, f"{found['solved']}/{found['runs']}", f"{low:.0%}-{high:.0%}",
                      f"{found['tokens_per_task']:,.0f}", f"{found['latency_p50_s']:.1f}")
    console.print(table)
    for comparison in results["comparisons"]:
        diff = comparison["pass_rate_diff"]
        interval = f" [{diff['low']:+.0%}, {diff['high']:+.0%}]" if diff else ""
        console.print(f"{comparison['second']} - {comparison['first']}: "
                      f"{comparison['only_second_passed'] - comparison['only_first_passed']:+d} tasks{interval}; "
                      f"{comparison['first']} only {comparison['only_first_passed']}, {comparison['second']} only "
                      f"{comparison['only_second_passed']}, McNemar exact p = {comparison['mcnemar_p']:.3f}")


if __name__ == "__main__":
    main()
