"""The harness with a local model on easy Exercism tasks: pass rate, seconds and tokens per task.

    .venv/bin/python benchmarks/bench_local_model.py [--model local:qwen2.5-coder-0.5b] [--tasks a,b,...]

Each task is the exercise's stub and its test file in a fresh git repository (the reference
solution and other spoilers left out), the instruction from `.docs/`, and the test file as the
required check, run after every write. Data: ../shared/data/tasks/exercism-python."""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tether.ledger import Ledger
from tether.policy import parse_policy
from tether.runner import RunSpec, start_run
from tether.workspace.git import git

EXERCISES = Path(__file__).resolve().parents[2] / "shared" / "data" / "tasks" / "exercism-python" / "exercises"
EASY = ["hello-world", "raindrops", "isogram", "hamming", "darts", "difference-of-squares", "armstrong-numbers",
        "square-root", "scrabble-score", "acronym"]
POLICY = """
[agent]
check_after_write = true
[budget]
max_steps = {steps}
max_wall_s = 300
[writes]
max_files = 3
max_lines = 200
[[checks]]
name = "tests"
command = "python -m pytest -q -x -p no:cacheprovider {test}"
timeout_s = 60
"""


def prepare(exercise: Path, root: Path) -> tuple[Path, str, str]:
    repo = root / exercise.name
    repo.mkdir()
    for path in exercise.iterdir():
        if path.is_file():  # stub and tests; .meta (the solution), .docs and .approaches stay out
            shutil.copy(path, repo / path.name)
    docs = exercise / ".docs"
    instruction = "\n\n".join(p.read_text() for p in sorted(docs.glob("instructions*.md")))
    test = next(p.name for p in repo.glob("*_test.py"))
    stub = test.removesuffix("_test.py") + ".py"
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", exercise.name)
    # Like a ticket that quotes the code it is about (and like `tether demo`): the stub in the task.
    task = (f"Implement {stub} so that {test} passes.\n\n{instruction}\n\n"
            f"The current {stub}:\n```python\n{(repo / stub).read_text()}```")
    return repo, task, test


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="local:qwen2.5-coder-0.5b")
    parser.add_argument("--tasks", default=",".join(EASY))
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    console = Console()
    table = Table("task", "status", "reason", "steps", "tokens", "seconds", title=f"harness with {args.model}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ledger = Ledger(f"sqlite:///{root / 'bench.db'}")
        for name in args.tasks.split(","):
            repo, task, test = prepare(EXERCISES / name, root)
            policy = parse_policy(POLICY.format(steps=args.steps, test=test), Path("bench.toml"))
            started = time.perf_counter()
            summary = start_run(ledger, RunSpec(task, repo, policy, model=args.model))
            seconds = time.perf_counter() - started
            rows.append((summary["status"] == "succeeded", seconds, summary["usage"]["tokens"]))
            table.add_row(name, summary["status"], summary["reason"][:60], str(summary["usage"]["steps"]),
                          f"{summary['usage']['tokens']:,}", f"{seconds:.1f}")
            console.print(f"{name}: {summary['status']} in {seconds:.1f}s")
        ledger.close()
    console.print(table)
    passed = sum(ok for ok, _, _ in rows)
    console.print(f"passed {passed}/{len(rows)}; mean {statistics.mean(s for _, s, _ in rows):.1f} s and "
                  f"{statistics.mean(t for _, _, t in rows):,.0f} tokens per task")


if __name__ == "__main__":
    main()
