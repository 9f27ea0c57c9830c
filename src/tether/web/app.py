"""`tether serve`: the web app for people (runs, a run's timeline, the approvals inbox, the fleet and
its kill switch, the evidence) and its JSON API under /api/. Every page and endpoint calls the same
library functions as the CLI; this module only reads requests and renders answers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from tether.approvals import decide_approval
from tether.errors import TetherError
from tether.ledger import Ledger, tokens
from tether.ledger.chain import verify_chain
from tether.ledger.queries import pending_approval, summarize
from tether.ledger.store import RunFilter, UnknownRun
from tether.ledger.tokens import TokenRefused
from tether.people import Actor
from tether.web import api, views
from tether.web.auth import COOKIE, CSRF_HEADER, NotSignedIn, Sessions, sign_in
from tether.web.jobs import Jobs

HERE = Path(__file__).parent
PAGE = 50
LIVE_S = 600  # a live timeline reconnects after this long


@dataclass
class Web:
    ledger: Ledger
    sessions: Sessions
    jobs: Jobs
    templates: Jinja2Templates
    reports: Path | None


class SignInFirst(Exception):
    def __init__(self, next_url: str, why: str):
        self.next_url, self.why = next_url, why


def make_app(db_url: str, *, open_: bool = False, reports: Path | None = None) -> FastAPI:
    app = FastAPI(title="Tether", description="Runs, approvals, the fleet and the evidence, as the CLI's --json "
                                               "shapes. Authenticate with `Authorization: Bearer <token>`.")
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["ago"] = _ago
    templates.env.filters["money"] = lambda value: f"${value:,.4f}" if value else "$0"
    web = Web(Ledger(db_url), Sessions.new(open_), Jobs(db_url), templates, reports)
    app.state.web = web
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(SignInFirst)
    async def _sign_in_first(request: Request, exc: SignInFirst) -> Response:
        return RedirectResponse(f"/signin?next={exc.next_url}", status_code=303)

    @app.exception_handler(UnknownRun)
    async def _unknown(request: Request, exc: UnknownRun) -> Response:
        return _error(request, 404, str(exc))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        return _error(request, exc.status_code, str(exc.detail))

    @app.exception_handler(TetherError)
    async def _refused(request: Request, exc: TetherError) -> Response:
        return _error(request, 409, str(exc))

    @app.middleware("http")
    async def _open_sessions(request: Request, call_next: Any) -> Response:
        """--no-auth: whoever has no session gets the OS user's (forms still need its CSRF token)."""
        if not web.sessions.open or request.cookies.get(COOKIE):
            return await call_next(request)
        cookie = web.sessions.open_cookie()
        request.scope["headers"] = [*request.scope["headers"], (b"cookie", f"{COOKIE}={cookie}".encode())]
        response = await call_next(request)
        response.set_cookie(COOKIE, cookie, httponly=True, samesite="strict")
        return response

    @app.on_event("shutdown")
    def _close() -> None:
        web.jobs.wait(5)
        web.ledger.close()

    app.include_router(api.router)
    _pages(app, web)
    return app


def _error(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": message}, status_code=status)
    web: Web = request.app.state.web
    return web.templates.TemplateResponse(request, "error.html", {"message": message, "actor": None, "csrf": ""},
                                          status_code=status)


def _ago(ts: float | None) -> str:
    if not ts:
        return ""
    seconds = max(0, time.time() - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


# who is asking ---------------------------------------------------------------------------------

def web_of(request: Request) -> Web:
    return request.app.state.web


def page_actor(request: Request) -> Actor:
    """The signed-in person of a page request; a redirect to the sign-in page otherwise."""
    web = web_of(request)
    cookie = request.cookies.get(COOKIE)
    try:
        return web.sessions.actor(web.ledger, cookie)
    except NotSignedIn as exc:
        raise SignInFirst(request.url.path, str(exc)) from exc


def checked_form_actor(request: Request, csrf: Annotated[str, Form()] = "") -> Actor:
    """The signed-in person of a form post, whose CSRF token must match the session's."""
    actor = page_actor(request)
    web = web_of(request)
    sent = csrf or request.headers.get(CSRF_HEADER)
    if not web.sessions.csrf_ok(request.cookies.get(COOKIE), sent):
        raise HTTPException(403, "the form's CSRF token does not match your session; reload the page")
    return actor


PageActor = Annotated[Actor, Depends(page_actor)]
FormActor = Annotated[Actor, Depends(checked_form_actor)]


def _context(request: Request, actor: Actor, **values: Any) -> dict[str, Any]:
    web = web_of(request)
    return {"actor": actor, "csrf": web.sessions.csrf(request.cookies.get(COOKIE) or ""), **values}


def _filters(request: Request) -> tuple[RunFilter, dict[str, str]]:
    query = {key: value for key, value in request.query_params.items() if value}
    return RunFilter(status=query.get("status"), repo=query.get("repo"), model=query.get("model"),
                     architecture=query.get("architecture"), source=query.get("source"),
                     since=_day(query.get("since")), until=_day(query.get("until"), end=True)), query


def _day(text: str | None, end: bool = False) -> float | None:
    """A YYYY-MM-DD date as a UTC timestamp (its end with `end`); None when absent."""
    if not text:
        return None
    try:
        start = time.mktime(time.strptime(text, "%Y-%m-%d")) - time.timezone
    except ValueError as exc:
        raise HTTPException(400, f"dates are YYYY-MM-DD, got {text!r}") from exc
    return start + 86400 if end else start


def _before(text: str | None) -> tuple[float, str] | None:
    if not text:
        return None
    at, _, run_id = text.partition(":")
    try:
        return float(at), run_id
    except ValueError as exc:
        raise HTTPException(400, f"before must be CREATED_AT:RUN_ID, got {text!r}") from exc


# pages -------------------------------------------------------------------------------------------

def _pages(app: FastAPI, web: Web) -> None:
    render = web.templates.TemplateResponse

    @app.get("/signin", response_class=HTMLResponse, include_in_schema=False)
    def signin_page(request: Request, next: str = "/runs") -> Response:
        return render(request, "signin.html", {"actor": None, "csrf": "", "next": _local(next), "error": ""})

    @app.post("/signin", include_in_schema=False)
    def signin(request: Request, token: Annotated[str, Form()], next: Annotated[str, Form()] = "/runs") -> Response:
        try:
            cookie, _ = sign_in(web.ledger, web.sessions, token)
        except TokenRefused as exc:
            return render(request, "signin.html", {"actor": None, "csrf": "", "next": _local(next),
                                                   "error": str(exc)}, status_code=401)
        response = RedirectResponse(_local(next), status_code=303)
        response.set_cookie(COOKIE, cookie, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    @app.post("/signout", include_in_schema=False)
    def signout(actor: FormActor) -> Response:
        response = RedirectResponse("/signin", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/", include_in_schema=False)
    def home() -> Response:
        return RedirectResponse("/runs", status_code=303)

    @app.get("/runs", response_class=HTMLResponse, include_in_schema=False)
    def runs_page(request: Request, actor: PageActor, before: str | None = None) -> Response:
        where, query = _filters(request)
        rows = web.ledger.runs_page(where, _before(before), PAGE + 1)
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        following = f"{rows[-1].created_at!r}:{rows[-1].id}" if more and rows else None
        choices = {column: web.ledger.distinct(column) for column in ("status", "repo", "model", "architecture",
                                                                       "source")}
        kept = {key: value for key, value in query.items() if key != "before"}
        return render(request, "runs.html", _context(request, actor, runs=rows, following=following, query=kept,
                                                     choices=choices))

    @app.get("/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
    def run_page(request: Request, run_id: str, actor: PageActor) -> Response:
        run = web.ledger.get_run(run_id)
        events = web.ledger.events(run.id)
        summary = summarize(run, events)
        request_ = pending_approval(events) if run.status == "awaiting_approval" else None
        return render(request, "run.html", _context(
            request, actor, run=run, summary=summary, rows=views.timeline(events),
            verified=verify_chain(events, run.event_count, run.head_hash), pending=request_,
            last_seq=events[-1].seq if events else 0, now=time.time(),
            children=[r for r in web.ledger.runs_page(RunFilter(source="replay"), limit=20)
                      if r.parent_run_id == run.id]))

    @app.get("/runs/{run_id}/steps/{seq}/diff", response_class=HTMLResponse, include_in_schema=False)
    def step_diff(request: Request, run_id: str, seq: int, actor: PageActor) -> Response:
        run = web.ledger.get_run(run_id)
        return render(request, "_diff.html", {"diff": views.step_diff(web.ledger.events(run.id), seq)})

    @app.get("/runs/{run_id}/live", include_in_schema=False)
    def live(request: Request, run_id: str, actor: PageActor, after: int = 0) -> Response:
        run = web.ledger.get_run(run_id)
        template = web.templates.get_template("_row.html")

        def stream() -> Iterator[bytes]:
            seen, deadline, quiet = after, time.time() + LIVE_S, 0
            while time.time() < deadline:
                fresh = web.ledger.events(run.id, after_seq=seen)
                for event in fresh:
                    html = template.render(row=views.timeline_row(event), run=run)
                    yield ("event: row\n" + "".join(f"data: {line}\n" for line in html.splitlines()) + "\n").encode()
                    seen = event.seq
                status = web.ledger.get_run(run.id).status
                yield f"event: status\ndata: {status}\n\n".encode()
                # a waiting run goes on once someone decides or a limit clears: keep watching it
                quiet = quiet + 1 if not fresh and status not in ("running", "awaiting_approval", "waiting") else 0
                if quiet >= 3:  # ended, and nothing new: the page has it all
                    break
                time.sleep(0.5)
            yield b"event: end\ndata: \n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.post("/runs/{run_id}/decide", include_in_schema=False)
    def decide(request: Request, run_id: str, actor: FormActor, decision: Annotated[str, Form()],
               reason: Annotated[str, Form()] = "") -> Response:
        if decision not in ("approve", "deny"):
            raise HTTPException(400, "decision is approve or deny")
        try:
            decided = decide_approval(web.ledger, run_id, decision == "approve", actor, reason)
        except TetherError as exc:
            return _error(request, 403 if "may" in str(exc) or "not an owner" in str(exc) else 409, str(exc))
        api.continue_in_background(web, decided, actor)
        return RedirectResponse(f"/runs/{decided}", status_code=303)

    @app.post("/runs/{run_id}/replay", include_in_schema=False)
    def replay(request: Request, run_id: str, actor: FormActor, policy: Annotated[str, Form()] = "") -> Response:
        job = api.replay_in_background(web, run_id, policy, actor)
        return RedirectResponse(f"/jobs/{job.id}", status_code=303)

    @app.post("/runs/{run_id}/cancel", include_in_schema=False)
    def cancel(request: Request, run_id: str, actor: FormActor, reason: Annotated[str, Form()] = "") -> Response:
        api.cancel(web, run_id, actor, reason)
        return RedirectResponse(f"/runs/{run_id}", status_code=303)

    @app.get("/jobs/{job_id}", response_class=HTMLResponse, include_in_schema=False)
    def job_page(request: Request, job_id: str, actor: PageActor) -> Response:
        job = web.jobs.get(job_id)
        if job is None:
            return _error(request, 404, f"no job {job_id!r} (jobs last as long as the server)")
        template = "_job.html" if request.headers.get("hx-request") else "job.html"
        return render(request, template, _context(request, actor, job=job))

    @app.get("/approvals", response_class=HTMLResponse, include_in_schema=False)
    def inbox(request: Request, actor: PageActor) -> Response:
        return render(request, "inbox.html", _context(request, actor, waiting=views.inbox(web.ledger, actor),
                                                      now=time.time()))

    @app.get("/fleet", response_class=HTMLResponse, include_in_schema=False)
    def fleet_page(request: Request, actor: PageActor) -> Response:
        return render(request, "fleet.html", _context(request, actor, fleet=views.fleet_view(web.ledger),
                                                      tasks=api.tasks_of(web)))

    @app.post("/fleet/switches", include_in_schema=False)
    def brake(request: Request, actor: FormActor, scope: Annotated[str, Form()],
              reason: Annotated[str, Form()] = "kill switch") -> Response:
        api.set_switch(web, scope, reason, actor)
        return RedirectResponse("/fleet", status_code=303)

    @app.post("/fleet/switches/release", include_in_schema=False)
    def release(request: Request, actor: FormActor, scope: Annotated[str, Form()]) -> Response:
        api.release_switch(web, scope, actor)
        return RedirectResponse("/fleet", status_code=303)

    @app.get("/evidence", response_class=HTMLResponse, include_in_schema=False)
    def evidence(request: Request, actor: PageActor) -> Response:
        return render(request, "evidence.html", _context(request, actor, **api.evidence(web)))

    @app.get("/evidence/evals/{eval_id}", response_class=HTMLResponse, include_in_schema=False)
    def eval_report(eval_id: str, actor: PageActor) -> Response:
        return HTMLResponse(api.eval_report_html(web, eval_id))

    @app.get("/evidence/canaries/{canary_id}", response_class=HTMLResponse, include_in_schema=False)
    def canary_report(canary_id: str, actor: PageActor) -> Response:
        return HTMLResponse(api.canary_report_html(web, canary_id))

    @app.get("/evidence/reports/{name}", response_class=HTMLResponse, include_in_schema=False)
    def saved_report(name: str, actor: PageActor) -> Response:
        return HTMLResponse(api.saved_report(web, name))

    @app.get("/tokens", response_class=HTMLResponse, include_in_schema=False)
    def tokens_page(request: Request, actor: PageActor) -> Response:
        api.require_admin(web, actor)
        return render(request, "tokens.html", _context(request, actor, holders=tokens.listed(web.ledger), made=None))

    @app.post("/tokens", response_class=HTMLResponse, include_in_schema=False)
    def token_create(request: Request, actor: FormActor, name: Annotated[str, Form()],
                     role: Annotated[str, Form()] = "viewer") -> Response:
        made = api.create_token(web, actor, name, role)
        return render(request, "tokens.html", _context(request, actor, holders=tokens.listed(web.ledger), made=made))

    @app.post("/tokens/{token_id}/revoke", include_in_schema=False)
    def token_revoke(request: Request, token_id: str, actor: FormActor) -> Response:
        api.revoke_token(web, actor, token_id)
        return RedirectResponse("/tokens", status_code=303)


def _local(url: str) -> str:
    """Only a path of this site may be a redirect's target (no open redirect)."""
    return url if url.startswith("/") and not url.startswith("//") and "\\" not in url else "/runs"

