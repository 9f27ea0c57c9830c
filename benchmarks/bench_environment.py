"""Set-up time of a project's environment: the first run on a lockfile (cold cache: the setup
commands download and install) against the second (the cached environment is mounted).

    .venv/bin/python benchmarks/bench_environment.py [--repos ../shared/data/repos] [--only itsdangerous,toolz]

Each repository is cloned from its bundle into a temporary folder and measured with a cache
folder of its own, so the first figure is a true cold start (network included)."""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tether.policy.schema import EnvironmentPolicy, SandboxPolicy
from tether.workspace.project import plan_for, prepare
from tether.workspace.sandbox import Sandbox, for_setup

console = Console()
DEFAULT_REPOS = Path(__file__).parents[2] / "shared" / "data" / "repos"


def set_up(repo: Path) -> tuple[float, bool, str]:
    plan = plan_for(EnvironmentPolicy(), repo)

    def run_setup(command: str, folder: Path) -> tuple[bool, str]:
        result = Sandbox(for_setup(SandboxPolicy()), repo, network=True, building=folder).run(command, 900)
        return result.exit_code == 0, result.output[-500:]

    started = time.perf_counter()
    _, built = prepare(plan, repo, run_setup)
    return time.perf_counter() - started, built, plan.note


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repos", type=Path, default=DEFAULT_REPOS)
    parser.add_argument("--only", default="itsdangerous,toolz,ms,sqlite-utils")
    args = parser.parse_args()
    table = Table("repository", "detected", "first run (cold)", "second run (cached)", "second / first")
    table.columns[1].max_width = 24
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only.split(","):
            bundle = args.repos / f"{name}.bundle"
            if not bundle.is_file():
                console.print(f"[yellow]{bundle} is missing; skipped[/]")
                continue
            repo = Path(tmp) / name
            subprocess.run(["git", "clone", "-q", str(bundle), str(repo)], check=True)
            os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / f"cache-{name}")
            console.print(f"{name}: setting up (cold)...")
            first, built_first, note = set_up(repo)
            second, built_second, _ = set_up(repo)
            assert built_first and not built_second, "the second run must come from the cache"
            table.add_row(name, note.split(" (")[0], f"{first:.1f} s", f"{second * 1e3:.1f} ms",
                          f"{second / first:.5f}")
    console.print(table)


if __name__ == "__main__":
    main()
