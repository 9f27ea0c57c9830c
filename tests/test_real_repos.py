"""Tether on real public repositories (../shared/data/repos): each project's checks run in its own
environment (set up once per lockfile, from the package registries), a seeded bug fails the
required check, a scripted fix passes it, and the check imports the worktree's code, never the
user's checkout."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import git, payloads, run_scripted
from tether.doctor import diagnose
from tether.ledger import Ledger
from tether.policy import parse_policy

REPOS = Path(__file__).parents[2] / "shared" / "data" / "repos"
SUBMIT = {"tool_calls": [{"name": "submit", "arguments": {"summary": "done"}}]}

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not REPOS.is_dir(), reason=f"no shared repositories at {REPOS}")]


@dataclass(frozen=True)
class Project:
    bundle: str
    path: str  # the file the bug is seeded in
    good: str  # a line of it
    bad: str  # what the seeded bug makes of that line
    check: str


PROJECTS = [
    Project("itsdangerous", "src/itsdangerous/encoding.py", 'return base64.urlsafe_b64encode(string).rstrip(b"=")',
            'return base64.urlsafe_b64encode(string)', "python -m pytest -q -p no:cacheprovider tests"),
    Project("toolz", "toolz/itertoolz.py", "    return next(iter(seq))\n", "    return next(iter(seq[1:]))\n",
            "python -m pytest -q -p no:cacheprovider toolz/tests/test_itertoolz.py"),
    Project("ms", "src/index.ts", "const m = s * 60;", "const m = s * 61;",
            "pnpm test"),  # the project's own script, which calls pnpm by name
    Project("sqlite-utils", "sqlite_utils/utils.py", '    if "INT" in column_type:\n        return int',
            '    if "INT" in column_type:\n        return float',
            "python -m pytest -q -p no:cacheprovider tests/test_column_affinity.py tests/test_create.py"),
]


def clone(project: Project, tmp_path: Path) -> Path:
    repo = tmp_path / project.bundle
    subprocess.run(["git", "clone", "-q", str(REPOS / f"{project.bundle}.bundle"), str(repo)], check=True)
    return repo


def policy_text(project: Project) -> str:
    return f'[[checks]]\nname = "tests"\ncommand = "{project.check}"\ntimeout_s = 600\n'


def seed_bug(project: Project, repo: Path) -> str:
    """Commit the bug; return the good content of the file."""
    file = repo / project.path
    good = file.read_text()
    assert project.good in good
    file.write_text(good.replace(project.good, project.bad, 1))
    git(repo, "-c", "user.email=s@e", "-c", "user.name=seed", "commit", "-qam", "seeded bug")
    return good


def environment(ledger: Ledger, summary: dict[str, Any]) -> dict[str, Any]:
    return payloads(ledger, summary["run_id"], "environment")[0]


@pytest.mark.parametrize("project", PROJECTS, ids=[p.bundle for p in PROJECTS])
def test_real_repository_end_to_end(project: Project, ledger: Ledger, tmp_path: Path):
    repo = clone(project, tmp_path)
    for _ in range(2):  # the first builds the environment; the second, from the cache, must agree
        diagnosis = diagnose(repo, parse_policy(policy_text(project), Path("tether.toml")))
        assert diagnosis.setup_works, diagnosis.findings
        assert [f.ok for f in diagnosis.findings if f.what == "check tests"] == [True], diagnosis.findings
    assert git(repo, "status", "--porcelain") == ""  # nothing the doctor did reached the checkout

    good = seed_bug(project, repo)
    seeded = diagnose(repo, parse_policy(policy_text(project), Path("tether.toml")))
    assert [f.ok for f in seeded.findings if f.what == "check tests"] == [False], seeded.findings
    # The user's checkout holds the fix, uncommitted: a check that imported the checkout's code
    # (an editable install, Tether's own PATH) would pass. It must fail on the worktree's bug.
    (repo / project.path).write_text(good)
    failed = run_scripted(ledger, repo, tmp_path, [SUBMIT], policy_text(project))
    assert failed["status"] == "failed", failed
    assert payloads(ledger, failed["run_id"], "check_finished")[0]["passed"] is False
    assert environment(ledger, failed)["built"] is False  # the doctor built it; the run reused it

    fix = {"tool_calls": [{"name": "write_file", "arguments": {"path": project.path, "content": good}}]}
    fixed = run_scripted(ledger, repo, tmp_path, [fix, SUBMIT], policy_text(project))
    assert fixed["status"] == "succeeded", fixed
    assert git(repo, "show", f"{fixed['branch']}:{project.path}") == good
    assert environment(ledger, fixed)["built"] is False
