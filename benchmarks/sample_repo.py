"""The raindrops sample as a fresh git repository, for the benchmarks that run real runs on it."""

from __future__ import annotations

import shutil
from pathlib import Path

from tether.workspace.git import git

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "tether" / "samples" / "raindrops"


def sample_repo(root: Path) -> Path:
    repo = root / "repo"
    shutil.copytree(SAMPLE, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "sample")
    return repo
