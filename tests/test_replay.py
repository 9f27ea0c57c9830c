"""Replay: recorded model responses through the same guard and sandbox, compared step by step."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import FIX, bash, call, event_types, git, parse_policy_text, run_scripted
from tether.ledger import Ledger
from tether.replay import replay_run
from tether.runner import RunError

QUICK = ('[[checks]]\nname = "quick"\n'
         "command = '''python -c \"import raindrops as r; assert r.convert(15) == 'PlingPlang'\"'''\n")
POLICY = '[commands]\ndeny = ["git push"]\n[ownership.protected]\n"LICENSE" = ["@legal"]\n' + QUICK
TURNS = [
    bash("cat raindrops_test.py | head -5"),
    bash("git push"),
    call("write_file", path="raindrops.py", content=FIX),
    call("write_file", path="NOTES.md", content="a\nb\nc\nd\ne\nf\n"),
    bash("ls"),
    call("submit", summary="done"),
]


@pytest.fixture
def recorded(ledger: Ledger, repo: Path, tmp_path: Path) -> dict:
    summary = run_scripted(ledger, repo, tmp_path, TURNS, POLICY)
    assert summary["status"] == "succeeded"
    return summary


def test_replay_is_identical_and_never_calls_a_model(ledger: Ledger, recorded: dict, monkeypatch):
    monkeypatch.setattr("tether.models.make_provider", lambda *a, **k: pytest.fail("a model was built"))
    report = replay_run(ledger, recorded["run_id"])
    assert report.identical, report.divergences
    assert report.steps_compared == 6 and report.replay_status == "succeeded"
    replayed = ledger.get_run(report.replay_run_id)
    assert replayed.source == "replay" and replayed.parent_run_id == recorded["run_id"]
    assert replayed.base_commit == recorded["base_commit"]
    assert ledger.verify(report.replay_run_id).ok and ledger.verify(recorded["run_id"]).ok


def test_replay_does_not_write_to_the_original(ledger: Ledger, recorded: dict):
    before = [(e.seq, e.hash) for e in ledger.events(recorded["run_id"])]
    replay_run(ledger, recorded["run_id"])
    assert [(e.seq, e.hash) for e in ledger.events(recorded["run_id"])] == before


def test_tampered_tool_output_is_named(ledger: Ledger, recorded: dict):
    run_id = recorded["run_id"]
    with ledger.engine.begin() as conn:
        seq = conn.execute(text("SELECT seq FROM events WHERE run_id = :r AND type = 'tool_result' ORDER BY seq"),
                           {"r": run_id}).scalars().all()[4]  # the `ls`
        conn.execute(text("UPDATE events SET payload = replace(payload, 'raindrops.py', 'evil.py') "
                          "WHERE run_id = :r AND seq = :s"), {"r": run_id, "s": seq})
    report = replay_run(ledger, run_id)
    assert not report.identical
    (first,) = report.divergences
    assert (first.call_id, first.field) == ("call_4_0", "output")
    assert "-evil.py" in first.diff and "+raindrops.py" in first.diff


def test_tampered_file_in_the_base_commit_is_named(ledger: Ledger, recorded: dict, repo: Path, tmp_path: Path):
    original_blob = git(repo, "rev-parse", f"{recorded['base_commit']}:raindrops_test.py").strip()
    forged = tmp_path / "forged.py"
    forged.write_text("# forged\n" + (repo / "raindrops_test.py").read_text())
    forged_blob = git(repo, "hash-object", "-w", str(forged)).strip()
    git(repo, "replace", original_blob, forged_blob)  # the object store now lies about the base
    report = replay_run(ledger, recorded["run_id"])
    first = report.divergences[0]
    assert (first.call_id, first.field) == ("call_0_0", "output")
    assert "+# forged" in first.diff


def test_against_a_stricter_policy_names_the_steps_it_would_deny(ledger: Ledger, recorded: dict):
    stricter = parse_policy_text(
        '[commands]\ndeny = ["git push", "ls"]\n[writes]\nmax_lines = 6\n' + QUICK)
    report = replay_run(ledger, recorded["run_id"], stricter, "stricter.toml")
    found = {(d.call_id, d.field, tuple(d.replayed) if isinstance(d.replayed, list) else d.replayed)
             for d in report.divergences}
    assert ("call_4_0", "decisions", ("deny commands.deny",)) in found  # ls
    assert ("call_3_0", "decisions", ("deny writes.max_lines",)) in found  # NOTES.md pushes past 6 lines
    assert ("call_5_0", "tree", report.divergences[-1].replayed) in found  # the submit sees the rollback
    assert {d.call_id for d in report.divergences} == {"call_3_0", "call_4_0", "call_5_0"}  # cat, git push: same


def test_against_policy_with_a_step_budget_names_where_it_stops(ledger: Ledger, recorded: dict):
    report = replay_run(ledger, recorded["run_id"], parse_policy_text("[budget]\nmax_steps = 2\n"), "tight.toml")
    assert report.replay_status == "stopped"
    assert next((d.call_id, d.field) for d in report.divergences if d.field == "reached") == ("call_2_0", "reached")


def test_replay_of_a_paused_run_is_refused(ledger: Ledger, repo: Path, tmp_path: Path):
    paused = run_scripted(ledger, repo, tmp_path, [call("write_file", path="LICENSE", content="x")], POLICY)
    with pytest.raises(RunError, match="awaiting_approval"):
        replay_run(ledger, paused["run_id"])


def test_replay_uses_recorded_approval_decisions(ledger: Ledger, repo: Path, tmp_path: Path):
    turns = [call("write_file", path="LICENSE", content="relicensed\n"), call("submit", summary="s")]
    summary = run_scripted(ledger, repo, tmp_path, turns, POLICY.replace(QUICK, ""),
                           approver=lambda request: (True, "legal", "ok"))
    report = replay_run(ledger, summary["run_id"])
    assert report.identical, report.divergences
    assert "approval_decided" in event_types(ledger, report.replay_run_id)
