"""`tether demo`: a guarded run on a bundled sample repository with a real failing test."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tether.policy import POLICY_FILE, parse_policy
from tether.workspace.git import git

SAMPLES = Path(__file__).parent / "samples"
SAMPLE_REPO = SAMPLES / "raindrops"
DEMO_TURNS = SAMPLES / "raindrops.turns.json"
INSTRUCTION = "Implement convert() in raindrops.py as INSTRUCTIONS.md describes, so raindrops_test.py passes."

DEMO_POLICY = """\
# The demo's policy: budgets, write caps, a protected path and a required check.
[budget]
max_steps = 12
max_tool_calls = 20
max_wall_s = 300

[writes]
max_files = 3
max_lines = 60

[commands]
deny = ["git push", "re:\\\\bcurl\\\\b|\\\\bwget\\\\b"]

[ownership.protected]
"LICENSE" = ["@legal"]

[[checks]]
name = "tests"
command = "python -m pytest -q -p no:cacheprovider raindrops_test.py"
timeout_s = 120
"""


@dataclass(frozen=True)
class DemoRepo:
    path: Path
    policy_path: Path


def prepare_demo(target: Path) -> DemoRepo:
    """Copy the sample into `target` (which must not exist or be empty) as a one-commit repo."""
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists and is not empty; pass --dir with a new directory")
    shutil.copytree(SAMPLE_REPO, target, dirs_exist_ok=True)
    policy_path = target / POLICY_FILE
    policy_path.write_text(DEMO_POLICY)
    parse_policy(DEMO_POLICY, policy_path)  # the bundled policy must itself be valid
    git(target, "init", "-q")
    git(target, "add", "-A")
    git(target, "commit", "-q", "-m", "raindrops sample (Exercism, MIT)")
    return DemoRepo(target, policy_path)
