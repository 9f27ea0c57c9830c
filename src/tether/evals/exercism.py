"""Import Exercism exercises (the layout of shared/data/tasks/) as an eval suite.

Each task's repository holds the stub, a *visible* test file (the first half of each test class's
tests, a deterministic choice) and the other top-level files; `.meta/` (the reference solution),
`.approaches/`, `.articles/` and hints stay out. The hidden check runs the full original test file,
laid over the delivered work after the agent finishes. With validation on, a task is kept only when
the reference solution passes both checks and the stub fails the hidden one."""

from __future__ import annotations

import ast
import json
import math
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tether.evals.suite import TASK_FILE, SuiteError
from tether.policy.load import toml_value

PYTEST = "python -m pytest -q -p no:cacheprovider"


@dataclass(frozen=True)
class Imported:
    name: str
    kept: bool
    reason: str  # why a task was left out; "" when kept
    visible_tests: int = 0
    hidden_tests: int = 0


def visible_part(source: str) -> tuple[str, int, int]:
    """(the test file with the second half of each test class's tests removed, tests kept, tests in all)."""
    tree = ast.parse(source)
    drop: list[tuple[int, int]] = []
    kept = total = 0
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        tests = [n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                 and n.name.startswith("test")]
        keep = math.ceil(len(tests) / 2)
        kept, total = kept + keep, total + len(tests)
        for test in tests[keep:]:
            start = min([test.lineno, *(d.lineno for d in test.decorator_list)])
            drop.append((start, test.end_lineno or test.lineno))
    lines = source.splitlines(keepends=True)
    for start, end in sorted(drop, reverse=True):
        del lines[start - 1:end]
    return "".join(lines), kept, total


def _exercises(source: Path) -> list[dict]:
    listing = source / "tasks.jsonl"
    if not listing.is_file():
        raise SuiteError(f"{source}: no tasks.jsonl (expected the layout of shared/data/tasks/)")
    return [json.loads(line) for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()]


def _instruction(exercise: Path, meta: dict, stub: str, test: str) -> str:
    docs = "\n\n".join((exercise / f).read_text(encoding="utf-8") for f in meta["instruction_files"])
    # Like a ticket that quotes the code it is about: the stub is in the task.
    return (f"Implement {stub} so that the tests in {test} pass (run them with `{PYTEST} {test}`).\n\n"
            f"{docs}\n\nThe current {stub}:\n```python\n{(exercise / stub).read_text(encoding='utf-8')}```")


def _passes(folder: Path, solution: str, source: Path, test: str, hidden: bool, timeout_s: float = 120) -> bool:
    """Whether `test` passes with `source` as the solution, on the visible or the hidden tests; a
    solution that hangs the tests past `timeout_s` does not pass."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copytree(folder / "repo", work, dirs_exist_ok=True)
        shutil.copy(source, work / solution)
        if hidden:
            shutil.copytree(folder / "hidden", work, dirs_exist_ok=True)
        try:
            result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
                                    cwd=work, capture_output=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0


def import_task(exercise: Path, meta: dict, out: Path, validate: bool, agent_s: float = 300) -> Imported:
    name = meta["name"]
    if len(meta["solution_files"]) != 1 or not meta["test_files"]:
        return Imported(name, False, "not one solution file and a test file")
    stub, test = meta["solution_files"][0], meta["test_files"][0]
    folder = out / name
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "repo").mkdir(parents=True)
    (folder / "hidden").mkdir()
    for relative in [stub, *meta["test_files"], *meta.get("other_top_level_files", [])]:
        shutil.copy(exercise / relative, folder / "repo" / relative)
    for relative in meta["test_files"]:
        shutil.copy(exercise / relative, folder / "hidden" / relative)
    visible, kept, total = visible_part((exercise / test).read_text(encoding="utf-8"))
    (folder / "repo" / test).write_text(visible, encoding="utf-8")
    fields = {"instruction": _instruction(exercise, meta, stub, test), "repo": "repo",
              "visible_check": f"{PYTEST} {test}", "hidden_check": f"{PYTEST} {test}", "hidden": "hidden",
              "restore": meta["test_files"]}
    text = "".join(f"{key} = {toml_value(value)}\n" for key, value in fields.items())
    (folder / TASK_FILE).write_text(text + f"\n[timeouts]\nagent_s = {agent_s:g}\ncheck_s = 120\n", encoding="utf-8")
    if validate:
        example = exercise / meta["example_files"][0]
        problem = ("the reference solution fails the visible tests"
                   if not _passes(folder, stub, example, test, hidden=False) else
                   "the reference solution fails the hidden tests"
                   if not _passes(folder, stub, example, test, hidden=True) else
                   "the stub already passes the hidden tests"
                   if _passes(folder, stub, exercise / stub, test, hidden=True) else "")
        if problem:
            shutil.rmtree(folder)
            return Imported(name, False, problem)
    return Imported(name, True, "", kept, total)


def import_exercism(source: Path, out: Path, names: list[str] | None = None, validate: bool = True,
                    limit: int | None = None, agent_s: float = 300) -> list[Imported]:
    """Import the exercises of `source` (all, or those named) into the suite directory `out`."""
    exercises = _exercises(source)
    known = {meta["name"] for meta in exercises}
    unknown = sorted(set(names or []) - known)
    if unknown:
        raise SuiteError(f"{source}: no exercise named {', '.join(unknown)}")
    chosen = [meta for meta in exercises if names is None or meta["name"] in names]
    out.mkdir(parents=True, exist_ok=True)
    results: list[Imported] = []
    for meta in chosen:
        if limit is not None and sum(r.kept for r in results) >= limit:
            break
        results.append(import_task(source / meta["dir"], meta, out, validate, agent_s))
    return results
