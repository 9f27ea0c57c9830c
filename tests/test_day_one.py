"""Day one on a real repository, as a new user meets it: caches are nobody's protected files, an
observation carries no terminal colours, a diff to approve is shown whole when piped, and the
summary's meters never wrap inside a value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import CHECK, FIX, bash, call, git, payloads, run_scripted, script
from tether.ledger import Ledger

TETHER = [sys.executable, "-m", "tether"]
OWNED_README = '[ownership.protected]\n"README.md" = ["@carol"]\n'


def test_a_tools_cache_is_not_a_protected_write(ledger: Ledger, repo: Path, tmp_path: Path):
    turns = [bash("python -m pytest -q raindrops_test.py; ls .pytest_cache/README.md"),
             bash("mkdir -p build && echo x > build/README.md"), call("submit", summary="s")]
    policy = OWNED_README + '[writes]\nignore = ["build/"]\n'
    summary = run_scripted(ledger, repo, tmp_path, turns, policy)
    first, second = payloads(ledger, summary["run_id"], "tool_result")[:2]
    assert ".pytest_cache/README.md" in first["observation"] and "rolled back" not in first["observation"]
    # an ignored file that is not a tool's cache, under an owned name, is still the owner's
    assert "rolled back" in second["observation"] and "use write_file or edit_file" in second["observation"]


def test_observations_and_check_output_carry_no_terminal_colours(ledger: Ledger, repo: Path, tmp_path: Path):
    colour = "printf '\\033[31mred\\033[0m \\033[1;32m1 passed\\033[0m\\n'"
    summary = run_scripted(ledger, repo, tmp_path, [bash(colour), call("submit", summary="s")],
                           CHECK.replace("python -m pytest -q", "python -m pytest -q --color=yes"))
    (result,) = payloads(ledger, summary["run_id"], "tool_result")[:1]
    assert "red 1 passed" in result["observation"] and "\x1b" not in result["observation"]
    (check,) = payloads(ledger, summary["run_id"], "check_finished")
    assert "failed" in check["output_tail"] and "\x1b" not in check["output_tail"]


def test_a_piped_approval_shows_the_whole_diff_and_whole_meters(repo: Path, tmp_path: Path):
    long_line = "x = '" + "a" * 150 + "'\n"
    (repo / "tether.toml").write_text('[ownership.protected]\n"raindrops.py" = ["@carol"]\n')
    turns = [call("write_file", path="raindrops.py", content=FIX + long_line)]
    paused = subprocess.run([*TETHER, "run", "x", "--no-input", "--model", script(tmp_path / "t.json", turns)],
                            cwd=repo, capture_output=True, text=True, env={**os.environ, "COLUMNS": "60"})
    assert paused.returncode == 4, paused.stderr
    assert "+" + long_line.rstrip("\n") in paused.stderr.splitlines()  # one line, not cut at the width
    listed = subprocess.run([*TETHER, "approvals"], cwd=repo, capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "60"})
    assert "+" + long_line.rstrip("\n") in listed.stdout.splitlines()
    shown = subprocess.run([*TETHER, "show", json.loads(subprocess.run(
        [*TETHER, "runs", "--json"], cwd=repo, capture_output=True, text=True).stdout)[0]["run_id"]],
        cwd=repo, capture_output=True, text=True, env={**os.environ, "COLUMNS": "60"})
    meters = [line for line in shown.stdout.splitlines() if "tool calls" in line or "tokens" in line]
    assert meters and all(line.count("/") <= 3 for line in meters)
    assert not any(line.strip().startswith("/") for line in shown.stdout.splitlines())


GIT_SESSION = ("git status --short; echo '# more' >> raindrops.py; git diff --stat; git stash -q && git stash list; "
               "git stash pop -q; git add raindrops.py && git commit -qm 'agent: local commit' && git log --oneline -2;"
               " echo '# again' >> raindrops.py; git checkout -- raindrops.py; git status --short; echo done")


def test_the_agent_has_a_git_of_its_own_that_never_writes_the_users_repository(ledger: Ledger, repo: Path,
                                                                                tmp_path: Path):
    refs_before = git(repo, "for-each-ref")
    objects_before = sorted(p.name for p in (repo / ".git" / "objects").rglob("*") if p.is_file())
    summary = run_scripted(ledger, repo, tmp_path, [bash(GIT_SESSION), call("submit", summary="s")])
    output = payloads(ledger, summary["run_id"], "tool_result")[0]["observation"]
    assert "Read-only file system" not in output and "index.lock" not in output, output
    assert "raindrops.py | 1 +" in output and "stash@{0}" in output and "agent: local commit" in output, output
    assert output.rstrip().endswith("done") and "exit code 0" in output
    # what the agent committed stays in its own git; the run delivers the worktree's files
    assert git(repo, "show", f"{summary['branch']}:raindrops.py").endswith("# more\n")
    assert "agent: local commit" not in git(repo, "log", "--all", "--oneline")
    assert git(repo, "for-each-ref").replace(f"refs/heads/{summary['branch']}", "") != "" and \
        [line for line in git(repo, "for-each-ref").splitlines() if "tether/" not in line] == \
        [line for line in refs_before.splitlines() if "tether/" not in line]
    objects_after = sorted(p.name for p in (repo / ".git" / "objects").rglob("*") if p.is_file())
    assert len(objects_after) - len(objects_before) <= 6  # Tether's own snapshot and commit, not the agent's
