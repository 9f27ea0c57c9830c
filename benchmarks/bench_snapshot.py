"""What a bash step's snapshot costs as the repository grows: the paths the kernel saw change
(inotify), written into the last tree in-process, against a full `git add -A`, each against the
command alone in the sandbox (the floor), measured in the same run on the same worktree.

    .venv/bin/python benchmarks/bench_snapshot.py [--files 5000,50000,500000] [--steps 20]

Per step: the command (it changes two files and creates one, in the sandbox), then the snapshot
(`Worktree.snapshot`: stage, write the tree) and the ignored files the step changed (what the
guard looks for under a protected path). Target: under 10 ms at 50,000 files, O(changed files).
A rolled-back step (a denied one) is measured too: the restore and the next step's snapshot.
Also: a run's start for the same repository (`git worktree add`, its files written by a worker per
core) against the same checkout writing one file after another."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tether.policy.schema import SandboxPolicy
from tether.workspace import worktree as worktree_module
from tether.workspace.sandbox import Sandbox
from tether.workspace.worktree import Worktree, create_worktree

console = Console()


def make_repo(root: Path, files: int) -> Path:
    """`files` small files, 50 to a folder, 20 folders to a package (as a large project is laid out)."""
    repo = root / f"repo-{files}"
    for index in range(files):
        folder = repo / f"pkg{index // 1000}" / f"mod{(index // 50) % 20}"
        if index % 50 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index}.py").write_text(f"x = {index}\n")
    (repo / ".gitignore").write_text("*.log\nbuild/\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.email=b@e", "-c", "user.name=b", "commit", "-qm", "base"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    return repo


def step_times(worktree: Worktree, steps: int, full: bool) -> tuple[list[float], list[float]]:
    """(the command alone, the snapshot and the ignored files it changed), seconds per step."""
    os.environ["TETHER_FULL_SNAPSHOTS"] = "1" if full else "0"
    worktree.__dict__.pop("_changes", None)  # a new watch (or none) for this measurement
    sandbox = Sandbox(SandboxPolicy(), worktree.path)
    worktree.snapshot()
    commands, snapshots = [], []
    for step in range(steps):
        started = time.perf_counter()
        sandbox.run(f"echo {step} >> pkg0/mod3/f150.py && echo {step} > pkg1/mod7/new{step}.py && "
                    f"sed -i 's/x/y/' pkg2/mod1/f2050.py && echo {step} > trace.log", 30)
        since = time.time_ns() - 10_000_000
        commands.append(time.perf_counter() - started)
        started = time.perf_counter()
        worktree.snapshot()
        worktree.ignored_changed_since(since)
        snapshots.append(time.perf_counter() - started)
    return commands, snapshots


def rollback_times(worktree: Worktree, steps: int) -> list[float]:
    """A step rolled back (as a denied step is): the restore to the tree before it, and the next
    step's snapshot, which must not pay for the rollback with a walk of the repository."""
    os.environ["TETHER_FULL_SNAPSHOTS"] = "0"
    worktree.__dict__.pop("_changes", None)
    sandbox = Sandbox(SandboxPolicy(), worktree.path)
    before = worktree.snapshot()
    costs = []
    for step in range(steps):
        sandbox.run(f"echo {step} >> pkg0/mod3/f150.py && echo {step} > pkg1/mod7/gone{step}.py", 30)
        worktree.snapshot()
        started = time.perf_counter()
        worktree.restore(before)
        sandbox_step = time.perf_counter()
        sandbox.run(f"echo {step} >> pkg2/mod1/f2050.py", 30)
        paused = time.perf_counter() - sandbox_step
        before = worktree.snapshot()
        costs.append(time.perf_counter() - started - paused)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", default="5000,50000")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    table = Table("files", "command alone (floor)", "full snapshot", "watched snapshot", "watched vs full",
                  "rollback + next snapshot", "run start (git worktree add)",
                  title=f"a bash step's snapshot, median of {args.steps} steps")
    with tempfile.TemporaryDirectory() as tmp:
        for files in [int(n) for n in args.files.split(",") if n]:
            console.print(f"making a repository of {files:,} files", style="dim")
            repo = make_repo(Path(tmp), files)
            head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                  check=True).stdout.strip()
            parallel = worktree_module.PARALLEL_CHECKOUT
            worktree_module.PARALLEL_CHECKOUT = ("-c", "checkout.workers=1")
            started = time.perf_counter()
            create_worktree(repo, f"sequential{files}", head, []).remove()  # the baseline: one file after another
            sequential = time.perf_counter() - started
            worktree_module.PARALLEL_CHECKOUT = parallel
            started = time.perf_counter()
            worktree = create_worktree(repo, f"bench{files}", head, [])
            start = time.perf_counter() - started
            floor, full = (statistics.median(t) for t in step_times(worktree, args.steps, full=True))
            floor_watched, watched = (statistics.median(t) for t in step_times(worktree, args.steps, full=False))
            floor = min(floor, floor_watched)
            rollback = statistics.median(rollback_times(worktree, args.steps))
            table.add_row(f"{files:,}", f"{floor * 1e3:.1f} ms",
                          f"{full * 1e3:.1f} ms ({full / floor:.2f}x the command)",
                          f"{watched * 1e3:.1f} ms ({watched / floor:.2f}x the command)",
                          f"{full / watched:.1f}x faster",
                          f"{rollback * 1e3:.1f} ms ({rollback / floor:.2f}x the command)",
                          f"{start:.2f} s ({sequential / start:.1f}x faster than {sequential:.2f} s, one file "
                          "after another)")
    console.print(table)


if __name__ == "__main__":
    main()
