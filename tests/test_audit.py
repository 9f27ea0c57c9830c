"""`tether audit`: a repository's readiness for agents, with the fix for each gap; the tests run twice
in the sandbox (a flaky one shows), secrets come from detect-secrets over the files and the recent
history, and a repository that cannot be built gets a report, not a crash."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import CHECK, git
from tether.audit import audit, ends_of, verdict_of_runs, why_failed
from tether.policy import parse_policy

TETHER = [sys.executable, "-m", "tether"]
READY = CHECK.replace("raindrops_test.py", "raindrops_test.py") + (
    '[budget]\nmax_usd = 1.0\n[writes]\nmax_files = 5\n[ownership.protected]\n"raindrops_test.py" = ["@qa"]\n')
FIXED = ("def convert(number):\n    sounds = ((3, 'Pling'), (5, 'Plang'), (7, 'Plong'))\n"
         "    return ''.join(s for d, s in sounds if number % d == 0) or str(number)\n")


def commit(repo: Path, message: str = "change") -> None:
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=d@e", "-c", "user.name=D", "commit", "-qm", message)


def findings(result) -> dict[str, object]:
    return {gap.what: gap for gap in result.findings}


def make_ready(repo: Path) -> None:
    (repo / "raindrops.py").write_text(FIXED)
    (repo / "tether.toml").write_text(READY)
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "tests.yml").write_text("on: push\n")
    (repo / "CODEOWNERS").write_text("raindrops_test.py @qa\n")
    (repo / "README.md").write_text("# raindrops\n\nRun the tests with `python -m pytest`.\n")
    commit(repo, "ready")


def test_a_ready_repository_scores_high_and_each_gap_names_its_fix(repo: Path):
    make_ready(repo)
    result = audit(repo, parse_policy(READY, Path("tether.toml")), True)
    gaps = [gap for gap in result.findings if not gap.ok]
    assert result.score == 100 and not gaps, gaps
    assert result.seconds["tests run 1"] > 0 and result.seconds["tests run 2"] > 0
    bare = audit(repo, parse_policy("", Path("x.toml")), False)  # no policy: its bounds are the gaps
    found = findings(bare)
    assert not found["budgets"].ok and "[budget]" in found["budgets"].fix
    assert not found["required checks"].ok and found["tests"].ok  # the layout's own test command ran
    assert bare.score < result.score


def test_two_runs_that_disagree_are_flaky():
    assert "flaky" in verdict_of_runs("tests", [[True], [False]], 1.0).detail
    assert verdict_of_runs("tests", [[True, True], [True, True]], 1.0).ok
    assert "fail on the base commit" in verdict_of_runs("tests", [[False], [False]], 1.0).detail
    pytest_output = "....F\n=== FAILURES ===\nE assert False\nFAILED tests/test_a.py::test_v - AssertionError\n1 failed"
    assert why_failed(pytest_output) == "FAILED tests/test_a.py::test_v - AssertionError"
    assert why_failed("> pnpm run test\nsh: 1: pnpm: not found\n") == "sh: 1: pnpm: not found"
    setup = "setup failed at `pip install " + "'pkg==1.0' " * 100 + "`: ERROR: File too large"
    kept = ends_of(setup, 400)
    assert len(kept) <= 400 and kept.startswith("setup failed at") and kept.endswith("ERROR: File too large")
    gap = verdict_of_runs("tests", [[False], [False]], 1.0, why_failed(pytest_output))
    assert gap.detail.endswith("FAILED tests/test_a.py::test_v - AssertionError")


def test_a_committed_secret_and_a_large_file_are_gaps(repo: Path):
    make_ready(repo)
    (repo / "deploy.env").write_text("AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n")
    (repo / "blob.bin").write_bytes(b"\0" * (6 << 20))
    commit(repo, "bad")
    found = findings(audit(repo, parse_policy(READY, Path("tether.toml")), True))
    assert found["tests"].ok
    assert not found["secrets"].ok and "deploy.env" in found["secrets"].detail
    assert "AKIAIOSFODNN7EXAMPLE" not in found["secrets"].detail  # where, never the value
    assert not found["large files"].ok and "blob.bin" in found["large files"].detail


def test_a_repository_that_cannot_be_built_gets_a_report(repo: Path):
    policy = parse_policy(CHECK + '[environment]\nsetup = ["python3 -m nothing_such_module"]\n', Path("t.toml"))
    found = findings(audit(repo, policy, True))
    assert not found["environment"].ok and "nothing_such_module" in found["environment"].detail
    assert "[environment] setup" in found["environment"].fix


def test_the_command_line_prints_json_and_html_and_exits_by_the_score(repo: Path, tmp_path: Path):
    make_ready(repo)
    page = tmp_path / "audit.html"
    done = subprocess.run([*TETHER, "audit", str(repo), "--json", "--html", str(page)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["score"] == 100 and "Readiness for agents: 100/100" in page.read_text()
    (repo / "tether.toml").unlink()
    commit(repo, "no policy")
    low = subprocess.run([*TETHER, "audit", str(repo)], capture_output=True, text=True)
    assert low.returncode == 1 and "tether init" in low.stdout
