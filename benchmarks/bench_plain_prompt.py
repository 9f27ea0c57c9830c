"""The local model asked plainly, against Tether's agent on the same tasks, scored on the hidden tests.

The baseline of issue 19: each Exercism task's own instruction (the text Tether's agent gets,
with the stub in it), then "answer with the complete solution file in one python block", one
greedy reply, no tools; the block is the solution. Tether's single shot (`max_steps = 1`) runs the
same tasks in the same process. Both are scored by the task's full (hidden) test file, and
compared pair by pair (McNemar's exact test), so every change to the agent is measured against
the plain prompt in one run.

    .venv/bin/python benchmarks/bench_plain_prompt.py [--tasks 40] [--model local:qwen2.5-coder-1.5b]
        [--configs plain,single] [--json out.json]

The tasks are the first N (by a hash of their names, so a fixed sample) that import-exercism keeps.
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

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from tether.evals.exercism import _exercises, _passes, import_task
from tether.evals.suite import load_task
from tether.ledger import Ledger
from tether.models import make_provider
from tether.policy import parse_policy
from tether.runner import RunSpec, start_run
from tether.stats import mcnemar_exact, wilson
from tether.workspace.git import git

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tasks" / "exercism-python"
PLAIN = "\n\nAnswer with the complete solution file in one python block."
_PYTHON_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)\n?```", re.DOTALL)
SINGLE = "[budget]\nmax_steps = 1\n"


def sample(count: int) -> list[str]:
    names = [meta["name"] for meta in _exercises(DATA)]
    return sorted(names, key=lambda name: hashlib.sha256(name.encode()).hexdigest())[:count]


def plain_answer(provider: object, instruction: str) -> str:
    """One greedy reply to the plain prompt, through the same llama.cpp instance Tether uses."""
    out = provider.llm.create_chat_completion(  # type: ignore[attr-defined]
        messages=[{"role": "user", "content": instruction + PLAIN}], max_tokens=1024, temperature=0.0)
    return out["choices"][0]["message"].get("content") or ""


def solved_plainly(folder: Path, meta: dict, reply: str) -> bool:
    blocks = _PYTHON_BLOCK.findall(reply)
    if not blocks:
        return False
    solution = folder / "plain-solution.py"
    solution.write_text(max(blocks, key=len) + "\n")
    return _passes(folder, meta["solution_files"][0], solution, meta["test_files"][0], hidden=True)


def solved_by_tether(folder: Path, meta: dict, model: str, ledger: Ledger, work: Path) -> bool:
    task = load_task(folder)
    repo = work / meta["name"]
    repo.mkdir(parents=True)
    for path in (folder / "repo").iterdir():
        (repo / path.name).write_bytes(path.read_bytes())
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=b@e", "-c", "user.name=bench", "commit", "-qm", "task")
    summary = start_run(ledger, RunSpec(task.instruction, repo, parse_policy(SINGLE, Path("single.toml")),
                                        model=model))
    delivered = work / f"{meta['name']}-solution.py"
    delivered.write_text(git(repo, "show", f"{summary['branch']}:{meta['solution_files'][0]}"))
    return _passes(folder, meta["solution_files"][0], delivered, meta["test_files"][0], hidden=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--model", default="local:qwen2.5-coder-1.5b")
    parser.add_argument("--configs", default="plain,single")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    configs = args.configs.split(",")
    console = Console()
    if not DATA.is_dir():
        sys.exit(f"no Exercism tasks at {DATA}")
    provider = make_provider(args.model)
    metas = {meta["name"]: meta for meta in _exercises(DATA)}
    results: dict[str, dict[str, bool]] = {}
    seconds: dict[str, float] = dict.fromkeys(configs, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        suite, work = Path(tmp) / "suite", Path(tmp) / "work"
        ledger = Ledger(f"sqlite:///{Path(tmp) / 'bench.db'}")
        with Progress(console=console) as progress:
            names = sample(len(metas))
            job = progress.add_task("tasks", total=args.tasks)
            for name in names:
                if len(results) >= args.tasks:
                    break
                meta = metas[name]
                if not import_task(DATA / meta["dir"], meta, suite, validate=True).kept:
                    continue  # a refactoring exercise, or one whose stub passes
                folder = suite / name
                instruction = load_task(folder).instruction
                results[name] = {}
                for config in configs:
                    started = time.perf_counter()
                    if config == "plain":
                        results[name][config] = solved_plainly(folder, meta, plain_answer(provider, instruction))
                    else:
                        results[name][config] = solved_by_tether(folder, meta, args.model, ledger, work / config)
                    seconds[config] += time.perf_counter() - started
                progress.advance(job)
                if args.json:  # after every task: a long run that is stopped keeps what it measured
                    args.json.write_text(json.dumps({"model": args.model, "tasks": results, "seconds": seconds},
                                                    indent=2))
        ledger.close()
    total = len(results)
    table = Table("how the model was asked", "solved", "95% interval", "seconds per task",
                  title=f"{args.model} on {total} Exercism tasks, scored on the hidden tests")
    for config in configs:
        solved = sum(r[config] for r in results.values())
        low, high = wilson(solved, total)
        table.add_row(config, f"{solved}/{total}", f"{low:.0%}-{high:.0%}", f"{seconds[config] / total:.1f}")
    console.print(table)
    for other in configs[1:]:
        only_plain = sum(r[configs[0]] and not r[other] for r in results.values())
        only_other = sum(r[other] and not r[configs[0]] for r in results.values())
        console.print(f"{configs[0]} only: {only_plain}, {other} only: {only_other}; McNemar exact "
                      f"p = {mcnemar_exact(only_plain, only_other):.3f}")


if __name__ == "__main__":
    main()
