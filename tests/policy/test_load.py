"""Policy files: the starter is valid; every kind of bad file is refused with file, key and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.policy import PolicyError, load_policy, parse_policy
from tether.policy.ownership import Ownership
from tether.policy.schema import OwnershipPolicy

STARTER = Path(__file__).parents[2] / "src" / "tether" / "policy" / "starter.toml"


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, Path("/repo/tether.toml"))
    assert str(caught.value).startswith("/repo/tether.toml: ")
    return caught.value.problems


def test_starter_policy_is_valid_and_strict():
    policy = load_policy(STARTER)
    assert policy.budget.max_usd == 2.0
    assert policy.checks[0].required
    assert "git push" in policy.commands.deny
    assert policy.ownership.protected["tether.toml"] == ["@platform"]
    assert policy.approvals.unattended == "pause"


def test_empty_policy_gets_defaults():
    policy = parse_policy("", Path("t.toml"))
    assert policy.agent.architecture == "harness" and policy.sandbox.mode == "bwrap"


@pytest.mark.parametrize("text, expected", [
    ("[budget\n", "invalid TOML: "),
    ("[budget]\nmax_usd = -1", "budget.max_usd: Input should be greater than 0 (got -1)"),
    ("[budget]\nmax_steps = 'ten'", "budget.max_steps: Input should be a valid integer"),
    ("[budgt]\nmax_usd = 1", "budgt: unknown key"),
    ("[writes]\nmax_lines = 10\nmax_line = 3", "writes.max_line: unknown key"),
    ("[agent]\narchitecture = 'swarm'", "agent.architecture: Input should be 'harness'"),
    ("[[checks]]\nname = 't'\ncommand = 'x'\ntimeout_s = 0", "checks[0].timeout_s: Input should be greater than 0"),
    ("[[checks]]\nname = 't'", "checks[0].command: Field required"),
    ("[[checks]]\nname='a'\ncommand='x'\n[[checks]]\nname='a'\ncommand='y'", "checks: duplicate check names: a"),
    ("[brakes]\nrepeat_max = 5\nrepeat_window = 3", "brakes: repeat_window (3) must be at least repeat_max (5)"),
    ("[commands]\ndeny = ['re:(']", "commands.deny: invalid regex in rule 're:('"),
    ("[ownership.protected]\n'docs/' = []", "ownership.protected: protected path 'docs/' names no owners"),
    ("[sandbox]\nmode = 'docker'", "sandbox.mode: Input should be 'bwrap' or 'none'"),
    ("[approvals]\nunattended = 'approve'", "approvals.unattended: Input should be 'pause' or 'deny'"),
])
def test_bad_policies_name_key_and_reason(text: str, expected: str):
    found = problems(text)
    assert any(p.startswith(expected) for p in found), found


def test_unreadable_and_non_utf8_files(tmp_path: Path):
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.toml")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"[agent]\nmodel = '\xe9'\n")
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(bad)


def test_ownership_merges_policy_and_codeowners():
    ownership = Ownership.build(OwnershipPolicy(protected={"docs/": ["@docs"]}),
                                "*.py @py-team\n/docs/ @writers @docs\n")
    assert ownership.owners_of("docs/index.md") == ["@docs", "@writers"]
    assert ownership.owners_of("src/a.py") == ["@py-team"]
    assert ownership.owners_of("README.md") == []
    no_codeowners = Ownership.build(OwnershipPolicy(codeowners=False), "* @everyone\n")
    assert no_codeowners.owners_of("README.md") == []
