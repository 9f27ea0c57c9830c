"""The typed event vocabulary: writers held to it, readers tolerant, and logs written before it
(the 72-run eval ledger in docs/eval-exercism-local, commit 79efbb6, schema version 0) still load,
verify, summarise and replay."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.evals.suite import load_task, prepare_repo
from tether.ledger import Ledger
from tether.ledger import events as ev
from tether.ledger.queries import started_of, summarize
from tether.replay import replay_run
from tether.workspace.git import git

ROOT = Path(__file__).parents[2]
OLD_LEDGER = ROOT / "docs" / "eval-exercism-local" / "ledger.db.gz"
EXERCISM = ROOT.parent / "shared" / "data" / "tasks" / "exercism-python"


@pytest.fixture(scope="module")
def old(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    path = tmp_path_factory.mktemp("old") / "ledger.db"
    with gzip.open(OLD_LEDGER) as packed, path.open("wb") as unpacked:
        shutil.copyfileobj(packed, unpacked)
    ledger = Ledger(f"sqlite:///{path}")
    yield ledger
    ledger.close()


def test_every_old_run_verifies_reads_typed_and_summarises_as_recorded(old: Ledger):
    runs = old.list_runs(limit=None)
    assert len(runs) == 72
    for run in runs:
        events = old.events(run.id)
        assert old.verify(run.id).ok, run.id
        assert all(not isinstance(e.data, ev.Unknown) for e in events)  # every type is known, every payload reads
        started = started_of(events)
        assert started is not None and started.schema_version == 0
        summary = summarize(run, events)
        assert summary["status"] == run.status
        recorded = run.summary or {}
        for key in ("usage", "rework", "interrupts", "denials", "brakes", "checks"):
            if key in recorded:  # summaries stored then; later keys (output_tail) are derived now
                assert _comparable(summary[key]) == _comparable(recorded[key]), (run.id, key)


def _comparable(value: object) -> object:
    if isinstance(value, list):
        return [_comparable(item) for item in value]
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if k != "output_tail"}
    return value


def _recreate_repo(started: ev.RunStarted, created_at: float, suite: Path) -> None:
    """The eval's task repository at its recorded path and base commit: the same tree (from the
    same Exercism data), committed by prepare_repo at a time found from the commit's hash."""
    name = Path(started.repo or "").name
    dest = Path(started.repo or "")
    if (dest / ".git").is_dir():
        return
    prepare_repo(load_task(suite / name), dest)
    tree = git(dest, "rev-parse", "HEAD^{tree}").strip()
    assert tree == started.base_tree, f"{name}: the task data changed since the eval"
    for when in range(int(created_at), int(created_at) - 6 * 3600, -1):  # repos were made at the eval's start
        body = (f"tree {tree}\nauthor Tether <tether@localhost> {when} +0000\n"
                f"committer Tether <tether@localhost> {when} +0000\n\neval task {name}\n").encode()
        if hashlib.sha1(b"commit %d\0" % len(body) + body).hexdigest() == started.base_commit:
            break
    else:
        raise AssertionError(f"{name}: no commit time gives {started.base_commit}")
    date = f"{when} +0000"
    commit = git(dest, "commit-tree", tree, "-m", f"eval task {name}",
                 env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}).strip()
    assert commit == started.base_commit
    git(dest, "reset", "--quiet", "--hard", commit)


@pytest.mark.slow
@pytest.mark.skipif(not EXERCISM.is_dir(), reason=f"no shared Exercism tasks at {EXERCISM}")
def test_a_sample_of_old_runs_replays_identical(old: Ledger, tmp_path: Path):
    from tether.evals.exercism import import_exercism

    sample = ["acronym", "hamming", "isogram", "raindrops"]  # two stopped by brakes, two succeeded
    runs = [run for run in old.list_runs(limit=None) if Path(run.repo).name in sample
            and "harness-guarded" in (started_of(old.events(run.id)).policy_file or "")]
    assert len(runs) == len(sample)
    suite = tmp_path / "suite"
    import_exercism(EXERCISM, suite, names=sample, validate=False)
    made = {Path(run.repo) for run in runs}
    try:
        for run in runs:
            started = started_of(old.events(run.id))
            _recreate_repo(started, run.created_at, suite)
            report = replay_run(old, run.id)
            assert report.identical, (run.id, report.divergences[:1])
            assert report.replay_status == run.status and report.steps_compared > 0
    finally:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


def test_schema_events_prints_every_type_with_its_fields():
    import json
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "tether", "schema", "events"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["schema_version"] == ev.SCHEMA_VERSION
    assert set(document["event_types"]) == {str(t) for t in ev.EventType}
    assert "rework" in document["event_types"]["tool_result"]["properties"]
    assert "by_person" in document["event_types"]["approval_decided"]["required"]
    assert "awaiting_approval" in document["run_statuses"]


def test_writers_are_held_to_the_vocabulary():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="extra"):
        ev.ToolCall(step=1, call_id="c", name="bash", arguments={}, comand="ls")  # a misspelt field
    with pytest.raises(ValidationError):
        ev.ToolResult(step="one", call_id="c", executed=True, ok=True, exit_code=0, output_digest=None,
                      duration_s=0.0, tree=None, observation="")
    with pytest.raises(ValidationError):
        ev.RunFinished(status="finished-ish", reason="")  # not a run status


def test_readers_are_tolerant_of_older_and_newer_payloads():
    old_result = {"step": 2, "call_id": "c", "executed": True, "ok": False, "exit_code": None, "output_digest": None,
                  "duration_s": 0.0, "tree": "t", "observation": "Required checks failed; fix and submit again.",
                  "a_field_since_removed": 1}
    read = ev.read_payload("tool_result", old_result)
    assert isinstance(read, ev.ToolResult) and read.rework and read.changed == []
    assert ev.read_payload("approval_decided", {"call_id": "c", "approved": False, "by": "tether (timeout)",
                                                "reason": ""}).by_person is False
    assert ev.read_payload("approval_decided", {"call_id": "c", "approved": False, "by": "alice",
                                                "reason": ""}).by_person is True
    paused = ev.read_payload("run_paused", {"reason": "waiting", "rule": "ownership.protected"})
    assert paused.status == ev.RunStatus.AWAITING_APPROVAL and not paused.held
    future = ev.read_payload("telemetry_span", {"trace": "x"})
    assert isinstance(future, ev.Unknown) and future.model_dump()["trace"] == "x"


def test_an_unreadable_payload_names_its_type_and_field():
    with pytest.raises(ev.UnreadableEvent, match=r"tool_call event: call_id: Field required"):
        ev.read_payload("tool_call", {"step": 1, "name": "bash", "arguments": {}})


def test_a_payload_is_stored_with_the_fields_its_writer_set():
    decision = ev.PolicyDecision(verdict="deny", rule="commands.deny", reason="no")
    assert decision.as_json() == {"verdict": "deny", "rule": "commands.deny", "reason": "no"}
    assert decision.model_copy(update={"role": "reviewer"}).as_json()["role"] == "reviewer"
