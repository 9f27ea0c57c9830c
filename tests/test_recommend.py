"""`tether recommend`: every path through the questions, as flags with --json, gives an
architecture that follows from the answers and a starter policy that loads and that `tether doctor`
accepts on the sample repository; bad answers are clear errors; nothing is overwritten."""

from __future__ import annotations

import itertools
import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tether.cli import app
from tether.demo import prepare_demo
from tether.policy import parse_policy
from tether.recommend import Answers, RecommendError, follow_ups, recommend

USD = [None, 0.5, 5.0]
PATHS = ([("person", roles, usd, protected) for roles, usd, protected in itertools.product([False, True], USD,
                                                                                            [False, True])]
         + [(judge, False, usd, protected) for judge, usd, protected in itertools.product(["evals", "metric"], USD,
                                                                                          [False, True])])


def expected_architecture(judge: str, roles: bool, usd: float | None) -> str:
    if judge == "evals":
        return "factory"
    if judge == "metric":
        return "research"
    return "orchestrated" if roles and (usd is None or usd >= 1.0) else "harness"


def flags(judge: str, roles: bool, usd: float | None, protected: bool) -> list[str]:
    words = ["recommend", "--judge", judge, "--json", "--protected" if protected else "--no-protected"]
    if judge == "person":
        words.append("--roles" if roles else "--no-roles")
    return words + ([] if usd is None else ["--max-usd", str(usd)])


def test_every_path_gives_its_architecture_and_a_policy_doctor_accepts(tmp_path: Path):
    sample = prepare_demo(tmp_path / "sample").path
    runner = CliRunner()
    policies: dict[str, str] = {}
    for judge, roles, usd, protected in PATHS:
        result = runner.invoke(app, [*flags(judge, roles, usd, protected), "--repo", str(sample)])
        assert result.exit_code == 0, (judge, roles, usd, protected, result.output)
        answer = json.loads(result.stdout)
        assert answer["architecture"] == expected_architecture(judge, roles, usd), answer
        assert answer["asked"] == follow_ups(judge) and len(answer["asked"]) <= 3
        assert all(isinstance(reason, str) and reason for reason in answer["why"])
        policy = parse_policy(answer["policy"], Path("tether.toml"))  # loads, or raises naming the key
        raw = tomllib.loads(answer["policy"])
        assert policy.agent.architecture == answer["runs_as"]
        assert policy.budget.max_usd == (usd or 2.0)
        assert [check.name for check in policy.checks if check.required] == ["tests"]
        assert bool(policy.ownership.protected) == protected
        assert ("tether.toml" in policy.writes.deny) == (not protected)  # never writable without a person
        assert answer["runs_as"] == answer["architecture"]  # every architecture runs as itself
        assert policy.factory.candidates == 4 and (policy.factory.spec_owners == ["@platform"]) == (
            protected and judge == "evals")
        assert "orchestrated" in raw or answer["architecture"] != "orchestrated"
        policies[answer["policy"]] = f"{judge}-{roles}-{usd}-{protected}"

    assert len(policies) >= 10  # the answers shape the policy, not one text for all
    for index, text in enumerate(policies):
        target = sample / f"policy-{index}.toml"
        target.write_text(text)
        doctor = runner.invoke(app, ["doctor", "--repo", str(sample), "--policy", str(target)])
        assert doctor.exit_code == 0, (policies[text], doctor.output)
        assert "check tests" in doctor.output  # the check ran (the sample's test fails: the task)


def test_the_costs_steer_the_choice_and_the_reasons_quote_measurements():
    cheap = recommend(Answers("person", roles=True, max_usd=0.5))
    assert cheap.architecture == "harness" and any("1.7x the tokens" in reason for reason in cheap.why)
    roomy = recommend(Answers("person", roles=True, max_usd=5))
    assert roomy.architecture == "orchestrated" and any("docs/eval-exercism-local" in r for r in roomy.why)
    factory = recommend(Answers("evals"))
    assert any("12 of the 16" in reason for reason in factory.why)
    assert recommend(Answers("person"), "npm test").policy.count('command = "npm test"') == 1


def test_the_check_command_comes_from_the_repository_layout(tmp_path: Path):
    node = tmp_path / "node"
    node.mkdir()
    (node / "package.json").write_text('{"scripts": {"test": "node t.js"}}')
    (node / "package-lock.json").write_text("{}")
    from tests.conftest import git

    git(node, "init", "-q")
    git(node, "add", "-A")
    git(node, "-c", "user.email=a@b", "-c", "user.name=A", "commit", "-qm", "x")
    result = CliRunner().invoke(app, ["recommend", "--judge", "person", "--json", "--repo", str(node)])
    assert result.exit_code == 0, result.output
    assert 'command = "npm test"' in json.loads(result.stdout)["policy"]
    elsewhere = CliRunner().invoke(app, ["recommend", "--judge", "person", "--json", "--repo", str(tmp_path)])
    assert 'command = "python -m pytest -q"' in json.loads(elsewhere.stdout)["policy"]  # not a repository


@pytest.mark.parametrize(("words", "message"), [
    (["--judge", "robot"], "--judge 'robot' is not one of person, evals, metric"),
    (["--judge", "person", "--max-usd", "0"], "positive number of USD"),
    (["--judge", "person", "--max-usd", "nan"], "positive number of USD"),
    (["--judge", "person", "--max-usd", "-3"], "positive number of USD"),
    ([], "--judge is needed when not on a terminal"),
])
def test_bad_answers_are_clear_errors(words: list[str], message: str):
    result = CliRunner().invoke(app, ["recommend", *words])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split()), result.output


def test_an_existing_policy_is_never_overwritten_without_force(tmp_path: Path):
    target = tmp_path / "tether.toml"
    target.write_text("# mine\n")
    runner = CliRunner()
    kept = runner.invoke(app, ["recommend", "--judge", "metric", "--write", str(target), "--repo", str(tmp_path)])
    assert kept.exit_code == 2 and "exists; pass --force" in " ".join(kept.output.split())
    assert target.read_text() == "# mine\n"
    written = runner.invoke(app, ["recommend", "--judge", "metric", "--write", str(target), "--force",
                                  "--repo", str(tmp_path)])
    assert written.exit_code == 0, written.output
    assert parse_policy(target.read_text(), target).agent.architecture == "research"
    with pytest.raises(RecommendError, match="not one of"):
        Answers("nobody")


def test_on_a_terminal_it_asks_the_question_and_only_the_follow_ups_that_matter(tmp_path: Path):
    """The real program on a pseudo-terminal: a person judges, several roles, $0.50, no protected
    paths; then an eval suite, where the roles question is not asked."""
    import os
    import subprocess
    import sys

    tether = Path(sys.executable).parent / "tether"
    for answers, expected, asked in ((b"person\ny\n0.5\nn\n", "harness", 4), (b"evals\n3\ny\n", "factory", 3)):
        leader, follower = os.openpty()
        os.write(leader, answers)
        done = subprocess.run([str(tether), "recommend", "--repo", str(tmp_path)], stdin=follower,
                              capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
        os.close(leader)
        os.close(follower)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.count("?") == asked, done.stdout  # the question and its follow-ups, nothing more
        assert f": {expected}\n" in done.stdout or f": {expected} (runs as" in done.stdout, done.stdout
        policy = done.stdout[done.stdout.index("# tether.toml"):]
        parse_policy(policy, Path("tether.toml"))
