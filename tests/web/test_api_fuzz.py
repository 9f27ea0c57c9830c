"""The JSON API fuzzed from its own OpenAPI document (schemathesis) against a real server and store:
no 500s, every answer as the document says; and without a token, with a forged one or as a viewer,
no request changes anything in the store."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from sqlalchemy import select

from tests.conftest import SAMPLE, git, token_for
from tests.web.server import web_server
from tests.web.test_web import paused_run
from tether.ledger import Ledger
from tether.ledger.schema import memories, runs, switches, tokens


@dataclass
class Live:
    url: str
    ledger: Ledger
    approver: str
    viewer: str


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    import shutil

    tmp = tmp_path_factory.mktemp("fuzz")
    repo = tmp / "repo"
    shutil.copytree(SAMPLE, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=d@e", "-c", "user.name=d", "commit", "-qm", "sample")
    db = f"sqlite:///{tmp / 'store.db'}"
    paused_run(repo, tmp, db)
    approver, viewer = token_for(repo, "alice", "approver", db), token_for(repo, "vic", "viewer", db)
    ledger = Ledger(db)
    with web_server(db, repo) as url:
        yield Live(url, ledger, approver, viewer)
    ledger.close()


@pytest.fixture(scope="module")
def api_schema(live: Live):
    return schemathesis.openapi.from_url(f"{live.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")
QUICK = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))


def state(ledger: Ledger) -> str:
    """Everything a request could change: runs and their logs' heads, switches, tokens, memory."""
    with ledger.engine.connect() as conn:
        rows = [conn.execute(select(runs.c.id, runs.c.status, runs.c.event_count, runs.c.head_hash)
                             .order_by(runs.c.id)).all(),
                conn.execute(select(switches).order_by(switches.c.scope)).all(),
                conn.execute(select(tokens.c.id, tokens.c.revoked_at).order_by(tokens.c.id)).all(),
                conn.execute(select(memories.c.id, memories.c.state).order_by(memories.c.id)).all()]
    return hashlib.sha256(json.dumps([[list(r) for r in part] for part in rows], default=str).encode()).hexdigest()


@schema.parametrize()
@QUICK
def test_no_server_errors_and_answers_as_documented(case, live: Live):
    case.call_and_validate(headers={"Authorization": f"Bearer {live.approver}"})


@schema.parametrize()
@QUICK
def test_without_a_valid_token_or_as_a_viewer_nothing_changes(case, live: Live):
    for who, headers in (("nobody", {}), ("a forged token", {"Authorization": "Bearer tt_forged"}),
                         ("a viewer", {"Authorization": f"Bearer {live.viewer}"})):
        before = state(live.ledger)
        answer = case.call(headers=headers)
        assert answer.status_code < 500
        if who != "a viewer" or case.method.upper() != "GET":  # only a viewer's reads are answered
            assert not 200 <= answer.status_code < 300, (who, case.method, case.path, answer.status_code)
        assert state(live.ledger) == before, f"{who}: {case.method} {case.formatted_path} changed the store"
