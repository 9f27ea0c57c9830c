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
def instruction() -> str:
    """The task as a ticket would put it: what to do, and the files it is about."""
    return ("Implement convert() in raindrops.py so that raindrops_test.py passes.\n\n"
            f"{(SAMPLE_REPO / 'INSTRUCTIONS.md').read_text()}\n"
            f"The current raindrops.py:\n```python\n{(SAMPLE_REPO / 'raindrops.py').read_text()}```")

DEMO_POLICY = """\
# The demo's policy: budgets, write caps, a protected path and a required check.
[agent]
check_after_write = true        # small models rarely submit: run the checks after every write

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


# The notes in shared/notes/local-models.md: 1.5B is the smallest model that does useful agent work here.
DEFAULT_DEMO_MODEL = "local:qwen2.5-coder-1.5b"


def verdict(summary: dict) -> str:
    """One honest sentence on how the demo went and where Tether acted."""
    acted = [f"{len(summary['denials'])} refusals" if summary["denials"] else "",
             "brake " + ", ".join(b["detector"] for b in summary["brakes"]) if summary["brakes"] else "",
             f"{summary['rework']} failed submits sent back" if summary["rework"] else ""]
    where = "; Tether acted: " + ", ".join(a for a in acted if a) if any(acted) else ""
    if summary["status"] == "succeeded":
        return f"The agent solved the task: the required check passes on {summary['branch']}{where}."
    return f"The agent did not solve the task ({summary['status']}: {summary['reason']}){where}."


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
