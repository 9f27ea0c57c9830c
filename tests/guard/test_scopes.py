"""Command rules and path resolution, unit by unit."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.guard.scopes import CommandRules, PathDenied, resolve_in_worktree
from tether.guard.shell import analyze
from tether.policy.schema import CommandsPolicy


def simple_commands(command: str) -> list[list[str | None]]:
    return [list(simple.words) for simple in analyze(command).commands]


def test_simple_commands_split_operators_wrappers_and_shells():
    assert simple_commands("cd src && FOO=1 git push origin; ls | wc -l") == [
        ["cd", "src"], ["git", "push", "origin"], ["ls"], ["wc", "-l"]]
    assert simple_commands("bash -c 'git push --force'") == [["git", "push", "--force"]]
    assert simple_commands("timeout 5 env -i /usr/bin/git push") == [["git", "push"]]


@pytest.mark.parametrize("command, verdict", [
    ("git status", "allow"),
    ("git push origin main", "deny"),
    ("echo hi && git push", "deny"),
    ("sh -c 'git  push'", "deny"),
    ("/usr/bin/git push", "deny"),
    ("curl http://x", "deny"),
    ("git log --grep push", "allow"),
    ("git pushy", "deny"),  # no git command: an alias, which could be `!git push`
    ("echo 'unterminated", "deny"),
    ("", "deny"),
])
def test_deny_rules(command: str, verdict: str):
    rules = CommandRules(CommandsPolicy(deny=["git push", r"re:\bcurl\b"]))
    assert rules.check(command).verdict == verdict


def test_allow_rules():
    rules = CommandRules(CommandsPolicy(allow=["python -m pytest", "ls", "re:^cat [\\w./]+$"]))
    assert rules.check("python -m pytest -q").verdict == "allow"
    assert rules.check("ls && python -m pytest").verdict == "allow"
    assert rules.check("ls; rm -rf x").verdict == "deny"
    assert rules.check("ls $(rm -rf x)").verdict == "deny"
    assert rules.check("cat a.txt").verdict == "allow"


def test_resolve_in_worktree(tmp_path: Path):
    root = tmp_path / "wt"
    (root / "src").mkdir(parents=True)
    (root / "out").symlink_to(tmp_path)
    (root / "inner").symlink_to(root / "src")
    assert resolve_in_worktree(root, "src/a.py") == "src/a.py"
    assert resolve_in_worktree(root, "./src/../b.py") == "b.py"
    assert resolve_in_worktree(root, str(root / "c.py")) == "c.py"
    assert resolve_in_worktree(root, "inner/d.py") == "src/d.py"  # the real path is what rules see
    for bad, rule in [("../x", "paths.outside"), ("out/x", "paths.outside"), (".git/HEAD", "paths.git"),
                      (".", "paths.invalid"), ("", "paths.invalid"), ("a\0b", "paths.invalid")]:
        with pytest.raises(PathDenied) as denied:
            resolve_in_worktree(root, bad)
        assert denied.value.rule == rule
