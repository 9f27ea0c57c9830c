"""The JSON API (the CLI's --json shapes) and the actions pages and API share. A request is made by
the holder of a bearer token, or by a signed-in browser whose state-changing requests carry the
session's CSRF token. Nothing here decides anything the library does not decide for the CLI."""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from tether import runner
from tether.approvals import decide_approval, list_pending
from tether.errors import TetherError
from tether.evals.matrix import build_results
from tether.evals.report import eval_html
from tether.gate import canary as canaries
from tether.gate.ladder import configurations, gate_log_id, tier_state
from tether.ledger import Ledger, tokens
from tether.ledger.fleet import Fleet, today
from tether.ledger.queries import summarize
from tether.ledger.schema import evals
from tether.ledger.store import RunFilter, UnknownRun
from tether.ledger.tokens import TokenRefused
from tether.people import Actor, administers
from tether.policy.load import org_limits, org_tiers, parse_policy
from tether.queue.tasks import Tasks
from tether.render.canary import canary_html
from tether.replay import replay_run
from tether.web.auth import COOKIE, CSRF_HEADER, NotSignedIn, bearer_actor
from tether.web.jobs import Job

router = APIRouter(prefix="/api")
MAX_LIMIT = 200


class Problem(BaseModel):
    detail: str


class Whoami(BaseModel):
    name: str
    via: Literal["os_user", "token"]
    role: Literal["viewer", "approver", "admin"] | None = None


class Decision(BaseModel):
    reason: str = Field("", max_length=10_000)


class Decided(BaseModel):
    run_id: str
    approved: bool
    by: str
    job: str = Field(description="the background job continuing the run (GET /api/jobs/{job})")


SCOPE = r"^(all|repo:.+|task:.+)$"


class SwitchIn(BaseModel):
    scope: str = Field(min_length=1, max_length=2000, pattern=SCOPE, description='"all", "repo:<name>" or "task:<id>"')
    reason: str = Field("kill switch", max_length=10_000)


class ScopeIn(BaseModel):
    scope: str = Field(min_length=1, max_length=2000, pattern=SCOPE)


class ReplayIn(BaseModel):
    policy: str | None = Field(None, max_length=200_000, description="another policy (TOML) to compare against")


class JobOut(BaseModel):
    id: str
    what: str
    by: str
    state: Literal["running", "done", "failed"]
    result: str
    link: str | None = None
    started_at: float


ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": Problem} for code in (400, 401, 403, 404, 409)}


# who is asking ------------------------------------------------------------------------------------

def _actor(request: Request, writes: bool) -> Actor:
    web = request.app.state.web
    try:
        bearer = bearer_actor(web.ledger, request.headers.get("authorization"))
    except TokenRefused as exc:
        raise HTTPException(401, str(exc)) from exc
    if bearer is not None:
        return bearer
    cookie = request.cookies.get(COOKIE)
    try:
        actor = web.sessions.actor(web.ledger, cookie)
    except NotSignedIn as exc:
        raise HTTPException(401, f"{exc}: send Authorization: Bearer <token>") from exc
    if writes and not web.sessions.csrf_ok(cookie, request.headers.get(CSRF_HEADER)):
        raise HTTPException(403, f"a browser's state-changing request needs the {CSRF_HEADER} header")
    return actor


def reader(request: Request) -> Actor:
    return _actor(request, writes=False)


def writer(request: Request) -> Actor:
    actor = _actor(request, writes=True)
    if not actor.may_decide:
        raise HTTPException(403, f"{actor.describe()} may look, not change anything")
    return actor


Reader = Annotated[Actor, Depends(reader)]
Writer = Annotated[Actor, Depends(writer)]


def _web(request: Request) -> Any:
    return request.app.state.web


# shared actions ---------------------------------------------------------------------------------

def continue_in_background(web: Any, run_id: str, actor: Actor) -> Job:
    """Continue a run once its request is decided, as `tether approve` does, in the background."""

    def work(ledger: Ledger) -> tuple[str, str | None]:
        summary = runner.continue_run(ledger, run_id)
        return f"run {run_id} {summary['status']}: {summary['reason']}", f"/runs/{run_id}"

    return web.jobs.start(f"continue run {run_id}", actor.name, work)


def replay_in_background(web: Any, run_id: str, policy_text: str, actor: Actor) -> Job:
    run = web.ledger.get_run(run_id)
    policy = parse_policy(policy_text, Path("compared.toml")) if policy_text.strip() else None

    def work(ledger: Ledger) -> tuple[str, str | None]:
        report = replay_run(ledger, run.id, policy, "compared.toml" if policy else "recorded")
        said = "identical to the record" if report.identical else f"{len(report.divergences)} divergence(s): " + \
            "; ".join(f"step {d.step} {d.tool}: {d.field} was {d.recorded!r}, now {d.replayed!r}"
                      for d in report.divergences[:5])
        return f"replay {report.replay_status} ({said})", f"/runs/{report.replay_run_id}"

    what = "compare under another policy" if policy else "replay"
    return web.jobs.start(f"{what}: run {run.id}", actor.name, work)


def cancel(web: Any, run_id: str, actor: Actor, reason: str) -> dict[str, Any]:
    if not actor.may_decide:
        raise HTTPException(403, f"{actor.describe()} may look, not cancel runs")
    return runner.cancel_run(web.ledger, run_id, reason or "cancelled from the web app", actor.name)


def set_switch(web: Any, scope: str, reason: str, actor: Actor) -> None:
    if not actor.may_decide:
        raise HTTPException(403, f"{actor.describe()} may look, not brake")
    if scope != "all" and not scope.startswith(("repo:", "task:")):
        raise HTTPException(400, f'scope must be "all", "repo:<name>" or "task:<id>", got {scope!r}')
    Fleet(web.ledger).set_switch(scope, reason or "kill switch", actor.name)


def release_switch(web: Any, scope: str, actor: Actor) -> bool:
    if not actor.may_decide:
        raise HTTPException(403, f"{actor.describe()} may look, not release a brake")
    released = Fleet(web.ledger).release_switch(scope, actor.name)
    if not released:
        raise HTTPException(404, f"no brake on {scope!r}")
    return released


def tasks_of(web: Any) -> list[dict[str, Any]]:
    """The queue's latest tasks (the queue's tables exist once a task was submitted or a worker ran)."""
    try:
        queue = web.__dict__.setdefault("queue", Tasks(web.ledger))
        return [task.as_dict() for task in queue.list(50)]
    except Exception as exc:  # no queue in this store yet, or DBOS cannot read it: say so, not a 500
        return [{"id": "", "state": "unavailable", "instruction": "", "repo": "", "reason": str(exc)[:300],
                 "submitted_at": time.time(), "run_id": None}]


def require_admin(web: Any, actor: Actor) -> None:
    refused = administers(web.ledger, actor)
    if refused is not None:
        raise HTTPException(403, f"{refused}: only an admin manages tokens")


def create_token(web: Any, actor: Actor, name: str, role: str) -> dict[str, Any]:
    require_admin(web, actor)
    try:
        token, holder = tokens.create(web.ledger, name, role, actor.name)  # type: ignore[arg-type]
    except TokenRefused as exc:
        raise HTTPException(400, str(exc)) from exc
    return {"token": token, "name": holder.name, "role": holder.role, "id": holder.id}


def revoke_token(web: Any, actor: Actor, token_id: str) -> None:
    require_admin(web, actor)
    try:
        tokens.revoke(web.ledger, token_id, actor.name)
    except TokenRefused as exc:
        raise HTTPException(404, str(exc)) from exc


def evidence(web: Any) -> dict[str, Any]:
    ledger: Ledger = web.ledger
    with ledger.engine.connect() as conn:
        eval_rows = conn.execute(select(evals.c.id, evals.c.created_at, evals.c.suite)
                                 .order_by(evals.c.created_at.desc()).limit(100)).all()
    tiers = org_tiers(Fleet(ledger).org_policy())
    pairs = [(repo, name) for repo in ledger.distinct("repo", 50) for name in configurations(ledger, repo)] \
        if tiers else []
    states = [{"state": tier_state(ledger, tiers, repo, name), "log": gate_log_id(repo, name)} for repo, name in pairs]
    reports = sorted(path.name for path in web.reports.glob("*.html")) if web.reports else []
    return {"evals": eval_rows, "tiers": states, "canaries": canaries.canaries(ledger), "reports": reports}


def eval_report_html(web: Any, eval_id: str) -> str:
    try:
        results = build_results(web.ledger, eval_id)
    except TetherError as exc:
        raise HTTPException(404, str(exc)) from exc
    return eval_html(results, f"eval {eval_id}")


def canary_report_html(web: Any, canary_id: str) -> str:
    if not web.ledger.has_run(canary_id):
        raise HTTPException(404, f"no canary {canary_id!r}")
    return canary_html(canaries.status(web.ledger, canary_id))


def saved_report(web: Any, name: str) -> str:
    """A report file of the --reports folder, by its name only (never a path out of it)."""
    if web.reports is None or "/" in name or "\\" in name or name.startswith(".") or not name.endswith(".html"):
        raise HTTPException(404, f"no report {html.escape(name)!r}")
    path = web.reports / name
    if not path.is_file():
        raise HTTPException(404, f"no report {html.escape(name)!r}")
    return path.read_text(encoding="utf-8", errors="replace")


def _job(job: Job) -> JobOut:
    return JobOut(id=job.id, what=job.what, by=job.by, state=job.state, result=job.result,  # type: ignore[arg-type]
                  link=job.link, started_at=job.started_at)


# endpoints ----------------------------------------------------------------------------------------

@router.get("/whoami", response_model=Whoami, responses=ERRORS)
def whoami(actor: Reader) -> Whoami:
    return Whoami(name=actor.name, via=actor.via, role=actor.role)


@router.get("/runs", responses=ERRORS, summary="Runs, newest first (tether runs --json)")
def runs(request: Request, actor: Reader,
         status: str | None = None, repo: str | None = None, model: str | None = None,
         architecture: str | None = None, source: str | None = None,
         since: Annotated[float | None, Query(description="a UTC timestamp")] = None,
         until: Annotated[float | None, Query(description="a UTC timestamp")] = None,
         before_created_at: float | None = None, before_id: str | None = None,
         limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50) -> list[dict[str, Any]]:
    before = (before_created_at, before_id or "") if before_created_at is not None else None
    rows = _web(request).ledger.runs_page(RunFilter(status, repo, model, architecture, source, since, until), before,
                                          limit)
    return [row.summary or {"run_id": row.id, "status": row.status, "branch": row.branch,
                            "instruction": row.instruction, "created_at": row.created_at} for row in rows]


@router.get("/runs/{run_id}", responses=ERRORS, summary="A run's summary (tether show --json)")
def run(request: Request, run_id: str, actor: Reader) -> dict[str, Any]:
    ledger = _web(request).ledger
    found = _run(ledger, run_id)
    return summarize(found, ledger.events(found.id))


@router.get("/runs/{run_id}/events", responses=ERRORS, summary="A run's events, in order")
def run_events(request: Request, run_id: str, actor: Reader,
               after: Annotated[int, Query(ge=0, le=2**31)] = 0) -> list[dict[str, Any]]:
    ledger = _web(request).ledger
    found = _run(ledger, run_id)
    return [{"seq": e.seq, "ts": e.ts, "type": e.type, "payload": e.payload, "hash": e.hash}
            for e in ledger.events(found.id, after_seq=after)]


@router.get("/runs/{run_id}/verify", responses=ERRORS, summary="Whether the run's hash chain holds (tether verify)")
def verify(request: Request, run_id: str, actor: Reader) -> dict[str, Any]:
    ledger = _web(request).ledger
    result = ledger.verify(_run(ledger, run_id).id)
    return {"ok": result.ok, "checked": result.checked, "bad_seq": result.bad_seq, "problem": result.problem}


@router.get("/approvals", responses=ERRORS, summary="Requests waiting for a decision (tether approvals --json)")
def approvals(request: Request, actor: Reader) -> list[dict[str, Any]]:
    return [{"run_id": p.run_id, "overdue": p.overdue, **p.request} for p in list_pending(_web(request).ledger)]


@router.post("/runs/{run_id}/approve", response_model=Decided, responses=ERRORS)
def approve(request: Request, run_id: str, body: Decision, actor: Writer) -> Decided:
    return _decide(request, run_id, True, body.reason, actor)


@router.post("/runs/{run_id}/deny", response_model=Decided, responses=ERRORS)
def deny(request: Request, run_id: str, body: Decision, actor: Writer) -> Decided:
    return _decide(request, run_id, False, body.reason, actor)


def _decide(request: Request, run_id: str, approved: bool, reason: str, actor: Actor) -> Decided:
    web = _web(request)
    _run(web.ledger, run_id)
    try:
        decided = decide_approval(web.ledger, run_id, approved, actor, reason)
    except TetherError as exc:
        status = 409 if "not awaiting" in str(exc) or "changed while" in str(exc) or "no pending" in str(exc) else 403
        raise HTTPException(status, str(exc)) from exc
    job = continue_in_background(web, decided, actor)
    return Decided(run_id=decided, approved=approved, by=actor.name, job=job.id)


@router.post("/runs/{run_id}/cancel", responses=ERRORS, summary="End a waiting run, delivering its work")
def cancel_endpoint(request: Request, run_id: str, body: Decision, actor: Writer) -> dict[str, Any]:
    web = _web(request)
    _run(web.ledger, run_id)
    try:
        return cancel(web, run_id, actor, body.reason)
    except TetherError as exc:
        raise HTTPException(409, str(exc)) from exc


@router.post("/runs/{run_id}/replay", response_model=JobOut, responses=ERRORS,
             summary="Replay the run (or compare it under another policy) in the background")
def replay_endpoint(request: Request, run_id: str, body: ReplayIn, actor: Writer) -> JobOut:
    web = _web(request)
    _run(web.ledger, run_id)
    try:
        return _job(replay_in_background(web, run_id, body.policy or "", actor))
    except TetherError as exc:
        raise HTTPException(409, str(exc)) from exc


@router.get("/jobs/{job_id}", response_model=JobOut, responses=ERRORS)
def job(request: Request, job_id: str, actor: Reader) -> JobOut:
    found = _web(request).jobs.get(job_id)
    if found is None:
        raise HTTPException(404, f"no job {job_id!r}")
    return _job(found)


@router.get("/fleet", responses=ERRORS, summary="Today's spend, limits and switches (tether fleet show --json)")
def fleet(request: Request, actor: Reader) -> dict[str, Any]:
    ledger = _web(request).ledger
    fleet_rows = Fleet(ledger)
    limits = org_limits(fleet_rows.org_policy())
    return {"limits": limits.model_dump(), "day": today(), "usage": [vars(u) for u in fleet_rows.usage(today())],
            "switches": [vars(s) for s in fleet_rows.switches()]}


@router.post("/switches", responses=ERRORS, summary="Set the kill switch on a scope (tether brake)")
def brake(request: Request, body: SwitchIn, actor: Writer) -> dict[str, Any]:
    set_switch(_web(request), body.scope, body.reason, actor)
    return {"scope": body.scope, "reason": body.reason, "by": actor.name}


@router.post("/switches/release", responses=ERRORS, summary="Lift the kill switch on a scope (tether release)")
def release(request: Request, body: ScopeIn, actor: Writer) -> dict[str, Any]:
    release_switch(_web(request), body.scope, actor)
    return {"scope": body.scope, "released": True, "by": actor.name}


@router.get("/tasks", responses=ERRORS, summary="The queue's latest tasks (tether tasks --json)")
def tasks(request: Request, actor: Reader) -> list[dict[str, Any]]:
    return tasks_of(_web(request))


def _run(ledger: Ledger, run_id: str) -> Any:
    try:
        return ledger.get_run(run_id)
    except UnknownRun as exc:
        raise HTTPException(404, str(exc)) from exc

