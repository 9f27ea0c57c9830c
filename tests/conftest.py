"""Shared fixtures: real git repositories, real SQLite and PostgreSQL stores, scripted models."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tether.ledger import Ledger, StoredEvent
from tether.ledger import events as ev
from tether.people import Actor
from tether.policy import parse_policy
from tether.runner import RunSpec, start_run

SAMPLE = Path(__file__).parents[1] / "src" / "tether" / "samples" / "raindrops"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI (CI=true), a skip is a failure: CI installs everything the tests need (the agents,
    the local models, the shared data beside the checkout, root and cgroups), so a skip there means
    something CI should have had is missing, and a green run would not mean what it says."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where everything this test needs is installed: {reason}"
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

FIX = (
    "def convert(number):\n"
    "    sounds = ((3, 'Pling'), (5, 'Plang'), (7, 'Plong'))\n"
    "    return ''.join(s for d, s in sounds if number % d == 0) or str(number)\n"
)
CHECK = '[[checks]]\nname = "tests"\ncommand = "python -m pytest -q -p no:cacheprovider raindrops_test.py"\n'


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding the raindrops sample: a stub with a really failing test."""
    path = tmp_path / "repo"
    shutil.copytree(SAMPLE, path)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "-c", "user.email=dev@example.com", "-c", "user.name=Dev", "commit", "-qm", "sample")
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store' / 'tether.db'}"


def _postgres_available() -> bool:
    try:
        with create_engine(PG_ADMIN_URL).connect() as conn:
            conn.execute(text("select 1"))
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    if not _postgres_available():
        pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 (start it; CI does)")
    name = f"tether_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    url = request.getfixturevalue("postgres_url")
    ledger = Ledger(url)  # migrates, then starts each test from an empty store
    with ledger.engine.begin() as conn:
        for table in ("eval_cells", "evals", "events", "runs", "switches", "fleet_usage", "repo_slots", "settings",
                      "tokens", "memories"):
            conn.execute(text(f"DELETE FROM {table}"))
        conn.execute(text("DROP SCHEMA IF EXISTS dbos CASCADE"))  # the task queue's tables
    ledger.close()
    return url


@pytest.fixture
def ledger(sqlite_url: str) -> Iterator[Ledger]:
    store = Ledger(sqlite_url)
    yield store
    store.close()


def person(name: str, via: str = "token", role: str = "approver") -> Actor:
    """Someone already authenticated (the CLI and the web app authenticate; the library trusts them)."""
    return Actor(name, via, role if via == "token" else None)  # type: ignore[arg-type]


def token_for(repo: Path, name: str, role: str = "approver", db: str | None = None) -> str:
    """A real token for `name`, made by the real CLI (the store's first admin is whoever can write it)."""
    made = subprocess.run([sys.executable, "-m", "tether", "token", "create", "--name", name, "--role", role,
                           "--json", *(["--db", db] if db else [])], cwd=repo, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    return json.loads(made.stdout)["token"]


def script(path: Path, turns: list[dict[str, Any]]) -> str:
    path.write_text(json.dumps(turns))
    return f"scripted:{path}"


def bash(command: str, **extra: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": "bash", "arguments": {"command": command}}], **extra}


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


# Neutral values for the fields a test does not care about, so it can state only those it does.
_NEUTRAL: dict[str, dict[str, Any]] = {
    "run_started": {"task": ""},
    "tool_call": {"step": 0, "call_id": "c", "name": "bash", "arguments": {}},
    "tool_result": {"step": 0, "call_id": "c", "executed": True, "ok": True, "exit_code": 0, "output_digest": None,
                    "duration_s": 0.0, "tree": None, "observation": ""},
    "model_response": {"step": 0, "model": "m", "content": "", "tool_calls": [], "usage": {}, "cost_usd": 0.0,
                       "price_known": True, "latency_s": 0.0},
}


def typed(kind: str, payload: dict[str, Any]) -> ev.Payload:
    """An event payload of `kind` with the given fields, the others neutral."""
    return ev.read_payload(kind, _NEUTRAL.get(kind, {}) | payload)


def parse_policy_text(text_: str):
    return parse_policy(text_, Path("tether.toml"))


def run_scripted(ledger: Ledger, repo: Path, tmp_path: Path, turns: list[dict[str, Any]],
                 policy_toml: str = "", approver: Any = None) -> dict[str, Any]:
    policy = parse_policy(policy_toml, Path("tether.toml"))
    model = script(tmp_path / f"turns-{uuid.uuid4().hex[:6]}.json", turns)
    return start_run(ledger, RunSpec("Make the tests pass", repo, policy, model=model), approver=approver)


def without_resumes(ledger: Ledger, run_id: str) -> list[StoredEvent]:
    """A run's events, less what a resume adds by design: its marker, and the environment it prepared
    again (recorded on every start, continue and resume)."""
    events = [e for e in ledger.events(run_id) if e.type != "run_resumed"]
    first = next((i for i, e in enumerate(events) if e.type == "environment"), None)
    return [e for i, e in enumerate(events) if e.type != "environment" or i == first]



def resumes_after_every_kill(ledger: Ledger, sqlite_url: str, repo: Path, policy_file: Path, model: str,
                             key: str) -> list[tuple[str, object]]:
    """Run to the end once; then again for each event, killed (SIGKILL) right after it and resumed:
    every resumed run must succeed, tell the same story (each event's type and payload[`key`], less
    what a resume adds) and deliver the same tree. Returns the story."""
    from tether.policy import load_policy
    from tether.runner import RunSpec, resume_run, start_run

    def story(run_id: str) -> list[tuple[str, object]]:
        return [(e.type, e.payload.get(key, e.payload.get("attempt"))) for e in without_resumes(ledger, run_id)
                if e.type != "environment"]

    driver = Path(__file__).parent / "crash_driver.py"
    reference = start_run(ledger, RunSpec("crash test", repo, load_policy(policy_file), model=model))
    assert reference["status"] == "succeeded", reference
    expected = story(reference["run_id"])
    tree = git(repo, "rev-parse", f"{reference['branch']}^{{tree}}")
    killed = 0
    for kill_after in range(1, len(expected) + 1):
        known = {run.id for run in ledger.list_runs(1000)}
        code = subprocess.run([sys.executable, str(driver), sqlite_url, str(kill_after), "start", str(repo),
                               str(policy_file), model], capture_output=True).returncode
        if code != -9:
            continue  # the run ended before that many events (the environment event is repeatable)
        killed += 1
        (run_id,) = {run.id for run in ledger.list_runs(1000)} - known
        summary = resume_run(ledger, run_id)
        where = f"killed after event {kill_after}"
        assert summary["status"] == "succeeded", (where, summary["reason"])
        assert story(run_id) == expected, where
        assert git(repo, "rev-parse", f"{summary['branch']}^{{tree}}") == tree, where
    assert killed >= len(expected) - 2, (killed, len(expected))
    return expected

def event_types(ledger: Ledger, run_id: str) -> list[str]:
    return [event.type for event in ledger.events(run_id)]


def payloads(ledger: Ledger, run_id: str, type_: str) -> list[dict[str, Any]]:
    return [event.payload for event in ledger.events(run_id) if event.type == type_]
