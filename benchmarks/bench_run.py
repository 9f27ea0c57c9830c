"""Overheads of a guarded run, each against a baseline measured in the same process.

    .venv/bin/python benchmarks/bench_run.py [--steps 200] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]

Prints: guard + event-log overhead per step (split into ledger, git snapshots and the rest)
against a bare loop doing the same model and tool work, for file writes and for sandboxed bash
steps under a policy with a protected path (the step then also looks for ignored files the
command changed); a sandboxed command against a plain subprocess; and events appended per
second on SQLite and PostgreSQL. Run it with PYTHONPATH pointing at another checkout's src/ to
compare two versions on one machine.
Targets: under 1 ms of guard overhead per step, under 10 ms of sandbox overhead per command."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tether.ledger import Ledger
from tether.models.scripted import ScriptedProvider
from tether.models.tools import SPECS
from tether.policy import parse_policy
from tether.policy.schema import SandboxPolicy
from tether.runner import RunSpec, start_run
from tether.workspace.sandbox import Sandbox
from tether.workspace.worktree import Worktree

SAMPLE = Path(__file__).parents[1] / "src" / "tether" / "samples" / "raindrops"
console = Console()


def timed(owner: Any, name: str, totals: dict[str, float]) -> Callable[[], None]:
    """Wrap owner.name so its time accumulates in totals[name]; returns an undo function."""
    original = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[name] += time.perf_counter() - started

    setattr(owner, name, wrapper)
    return lambda: setattr(owner, name, original)


def make_repo(root: Path, files: int = 0) -> Path:
    """The raindrops sample, padded with `files` small files in nested folders (a larger project)."""
    repo = root / "repo"
    shutil.copytree(SAMPLE, repo)
    (repo / "notes.txt").write_text("v1\n")  # the file every step rewrites: tracked, as an edited file is
    for index in range(files):
        folder = repo / "pad" / f"d{index % 97}" / f"e{index % 13}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index}.py").write_text(f"x = {index}\n")
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.email=b@b", "-c", "user.name=b", "commit", "-qm", "s"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    return repo


def turns(steps: int, tool: str) -> list[dict[str, Any]]:
    # Alternate two contents so every step changes the worktree (snapshots and caps do real work).
    def step(i: int) -> dict[str, Any]:
        if tool == "bash":
            return {"name": "bash", "arguments": {"command": f"echo v{i % 2} > notes.txt"}}
        return {"name": "write_file", "arguments": {"path": "notes.txt", "content": f"v{i % 2}\n"}}
    return [{"tool_calls": [step(i)], "usage": {"input_tokens": 10, "output_tokens": 5}} for i in range(steps)]


def bench_steps(steps: int, root: Path, tool: str, files: int = 0) -> dict[str, float]:
    root = root / f"{tool}-{files}"
    root.mkdir()
    repo = make_repo(root, files)
    script = root / "turns.json"
    script.write_text(json.dumps(turns(steps, tool)))

    # Baseline: the same model calls and tool work, no guard, no log, no snapshots.
    provider = ScriptedProvider(script)
    box = Sandbox(SandboxPolicy(), repo)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "task"}]
    started = time.perf_counter()
    for _ in range(steps):
        response = provider.complete(messages, SPECS, 100)
        messages.append({"role": "assistant", "content": "", "tool_calls": [c.as_dict() for c in response.tool_calls]})
        call = response.tool_calls[0]
        if tool == "bash":
            box.run(call.arguments["command"], 10)
        else:
            (repo / call.arguments["path"]).write_text(call.arguments["content"])
        messages.append({"role": "tool", "tool_call_id": call.id, "content": "ok"})
    bare = (time.perf_counter() - started) / steps

    totals: dict[str, float] = defaultdict(float)
    undo = [timed(Ledger, "append", totals), timed(Worktree, "snapshot", totals), timed(Worktree, "diff", totals)]
    if hasattr(Worktree, "snapshot_file"):  # absent before file writes were snapshotted in-process
        undo.append(timed(Worktree, "snapshot_file", totals))
    sandbox = "[ownership.protected]\n'docs/' = ['@docs']\n" if tool == "bash" else "[sandbox]\nmode = 'none'\n"
    policy = parse_policy(f"[budget]\nmax_steps = {steps + 1}\nmax_tool_calls = {steps + 1}\n"
                          f"[writes]\nmax_lines = 100000\n{sandbox}"
                          "[brakes]\nrepeat_max = 1000000\nrepeat_output_max = 1000000\nrepeat_window = 1000000\n",
                          Path("bench.toml"))
    ledger = Ledger(f"sqlite:///{root / 'bench.db'}")
    started = time.perf_counter()
    summary = start_run(ledger, RunSpec("bench", repo, policy, model=f"scripted:{script}"))
    total = time.perf_counter() - started
    if summary["usage"]["steps"] != steps:
        raise SystemExit(f"the guarded run did {summary['usage']['steps']} of {steps} steps: {summary['reason']}")
    for restore in undo:
        restore()
    # The loop itself runs from the first model request to the last tool result; the rest of the
    # wall time is per-run set-up and delivery (worktree, branch commit), reported on its own.
    recorded = ledger.events(summary["run_id"])
    first = next(e.ts for e in recorded if e.type == "model_request")
    last = [e.ts for e in recorded if e.type == "tool_result"][-1]
    ledger.close()
    loop = last - first
    return {"bare": bare, "guarded": loop / steps, "setup": total - loop, "ledger": totals["append"] / steps,
            "git": (totals["snapshot"] + totals["diff"] + totals["snapshot_file"]) / steps}


def bench_sandbox(n: int, root: Path) -> tuple[float, float]:
    workdir = root / "wt"
    workdir.mkdir()
    box = Sandbox(SandboxPolicy(), workdir)
    plain_started = time.perf_counter()
    for _ in range(n):
        subprocess.run(["/bin/bash", "-c", "true"], cwd=workdir, check=True)
    plain = (time.perf_counter() - plain_started) / n
    boxed_started = time.perf_counter()
    for _ in range(n):
        box.run("true", 10)
    return plain, (time.perf_counter() - boxed_started) / n


def bench_checks(root: Path, files: int, n: int = 5) -> tuple[float, float]:
    """(a check run in the worktree itself, as before checks judged a clean export; the same check
    on a clean export of the tree, the environment's generated files laid in), seconds per check."""
    from tether.workspace.export import checked_out
    from tether.workspace.git import git

    folder = root / f"checks-{files}"
    folder.mkdir()
    repo = make_repo(folder, files)
    tree = git(repo, "rev-parse", "HEAD^{tree}").strip()
    command = "python3 -c 'import raindrops'"
    in_place = Sandbox(SandboxPolicy(), repo)
    started = time.perf_counter()
    for _ in range(n):
        in_place.run(command, 60)
    worktree = (time.perf_counter() - started) / n
    started = time.perf_counter()
    for _ in range(n):
        with checked_out(repo, tree, None) as export:
            Sandbox(SandboxPolicy(), export, judging=True).run(command, 60)
    return worktree, (time.perf_counter() - started) / n


def bench_run_user(root: Path, n: int = 50) -> tuple[float, float]:
    """(a sandboxed command as one shared user, as before; as the run's own user, with its account
    files laid over /etc/passwd and /etc/group), seconds per command."""
    from tether.workspace import sandbox as sandbox_module

    workdir = root / "users"
    workdir.mkdir()
    box = Sandbox(SandboxPolicy(), workdir)
    started = time.perf_counter()
    for _ in range(n):
        box.run("true", 10)
    own = (time.perf_counter() - started) / n
    made = sandbox_module.account_files
    sandbox_module.account_files = lambda uid, state: {}  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        for _ in range(n):
            box.run("true", 10)
        shared = (time.perf_counter() - started) / n
    finally:
        sandbox_module.account_files = made
    return shared, own


def bench_appends(url: str, n: int) -> float:
    ledger = Ledger(url)
    run_id = f"bench-{uuid.uuid4().hex[:8]}"
    ledger.create_run(run_id, repo="/bench", instruction="append benchmark")
    payload = {"observation": "x" * 500, "exit_code": 0, "tree": "0" * 40}
    started = time.perf_counter()
    for _ in range(n):
        ledger.append(run_id, "tool_result", payload)
    rate = n / (time.perf_counter() - started)
    ledger.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--files", default="200,5000,50000",
                        help="repository sizes (files) for the per-step cost as the repository grows")
    args = parser.parse_args()
    sizes = [int(n) for n in args.files.split(",") if n]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        steps = bench_steps(args.steps, root, "write_file")
        bash_steps = bench_steps(max(20, args.steps // 5), root, "bash")
        plain, boxed = bench_sandbox(50, root)
        sqlite_rate = bench_appends(f"sqlite:///{root / 'appends.db'}", 2000)
        by_size = {n: (bench_steps(50, root, "write_file", n), bench_steps(20, root, "bash", n)) for n in sizes}
        checks = {n: bench_checks(root, n) for n in sizes}
        shared_user, own_user = bench_run_user(root)
    try:
        pg_rate: float | None = bench_appends(args.pg, 1000)
    except Exception as exc:  # a benchmark reports what it could not measure
        console.print(f"[yellow]PostgreSQL not measured: {exc}[/]")
        pg_rate = None

    overhead = steps["guarded"] - steps["bare"]
    logic = overhead - steps["ledger"] - steps["git"]
    table = Table("measure", "value", "against", title=f"guarded run, {args.steps} steps")
    table.add_row("bare loop, per step", f"{steps['bare'] * 1e3:.3f} ms", "baseline")
    table.add_row("guarded loop, per step", f"{steps['guarded'] * 1e3:.3f} ms",
                  f"{steps['guarded'] / steps['bare']:.1f}x bare")
    table.add_row("  overhead per step", f"{overhead * 1e3:.3f} ms", "")
    table.add_row("    event log (≈6 appends)", f"{steps['ledger'] * 1e3:.3f} ms", "")
    table.add_row("    git snapshot + diff", f"{steps['git'] * 1e3:.3f} ms", "")
    table.add_row("    guard logic and the rest", f"{logic * 1e3:.3f} ms", "target < 1 ms")
    table.add_row("run set-up + delivery, once", f"{steps['setup'] * 1e3:.1f} ms", "worktree, commit, cleanup")
    bash_overhead = bash_steps["guarded"] - bash_steps["bare"]
    table.add_row("bare sandboxed bash loop, per step", f"{bash_steps['bare'] * 1e3:.3f} ms", "baseline")
    table.add_row("guarded bash loop, per step", f"{bash_steps['guarded'] * 1e3:.3f} ms",
                  f"{bash_steps['guarded'] / bash_steps['bare']:.2f}x bare")
    table.add_row("  overhead per bash step", f"{bash_overhead * 1e3:.3f} ms", "")
    table.add_row("    git snapshot + diff", f"{bash_steps['git'] * 1e3:.3f} ms", "")
    table.add_row("plain subprocess", f"{plain * 1e3:.2f} ms", "baseline")
    table.add_row("sandboxed command", f"{boxed * 1e3:.2f} ms",
                  f"{boxed / plain:.1f}x plain, +{(boxed - plain) * 1e3:.2f} ms (target < 10 ms)")
    table.add_row("appends/s SQLite", f"{sqlite_rate:,.0f}", "")
    table.add_row("appends/s PostgreSQL", f"{pg_rate:,.0f}" if pg_rate else "n/a",
                  f"{pg_rate / sqlite_rate:.2f}x SQLite" if pg_rate else "")
    console.print(table)
    grown = Table("files", "write step: overhead", "of it git", "bash step: overhead", "of it git",
                  title="per-step cost as the repository grows (overhead = guarded - bare, same run)")
    for n, (write, bash) in by_size.items():
        grown.add_row(f"{n:,}", f"{(write['guarded'] - write['bare']) * 1e3:.2f} ms", f"{write['git'] * 1e3:.2f} ms",
                      f"{(bash['guarded'] - bash['bare']) * 1e3:.2f} ms", f"{bash['git'] * 1e3:.2f} ms")
    console.print(grown)
    judged = Table("files", "check in the worktree", "check on a clean export", "ratio",
                   title="a required check: in the worktree (before) and on a clean export of the tree (now)")
    for n, (before, now) in checks.items():
        judged.add_row(f"{n:,}", f"{before * 1e3:.1f} ms", f"{now * 1e3:.1f} ms", f"{now / before:.2f}x")
    console.print(judged)
    console.print(f"a sandboxed command as one shared user: {shared_user * 1e3:.2f} ms; as the run's own user "
                  f"(account files laid in): {own_user * 1e3:.2f} ms ({own_user / shared_user:.2f}x)")


if __name__ == "__main__":
    main()
