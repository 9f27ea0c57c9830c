"""The gateway over HTTP: Anthropic Messages, OpenAI Responses and Chat Completions on loopback,
streaming (server-sent events) and not. Every error comes back in the client's own format.

Plain Starlette, not FastAPI: nothing here uses FastAPI's validation or documents, and its request
handling added 0.11 ms to each request (`benchmarks/bench_gateway.py` measures the rest)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tether.gateway import wire
from tether.gateway.agent_tools import AGENTS
from tether.gateway.core import Gateway, HookError, Refused, Relayed
from tether.gateway.hook import hook_phase, reply

ROUTES: dict[str, wire.Wire] = {"/v1/messages": "anthropic", "/v1/responses": "responses",
                                "/v1/chat/completions": "chat"}


def _token(http: HttpRequest) -> str:
    bearer = http.headers.get("authorization", "")
    return http.headers.get("x-api-key") or (bearer[7:] if bearer.lower().startswith("bearer ") else "")


async def _passed_on(relayed: Relayed) -> AsyncIterator[bytes]:
    """The relayed stream, and its record when it ends: also when the agent goes away mid-stream
    (the response is cancelled; the record is shielded from that)."""
    assert relayed.chunks is not None
    try:
        async for chunk in iterate_in_threadpool(relayed.chunks):
            yield chunk
    finally:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(relayed.finish)


def make_app(gateway: Gateway) -> Starlette:
    def endpoint(kind: wire.Wire) -> Any:
        async def handle(http: HttpRequest) -> Response:
            try:
                body = json.loads(await http.body() or b"null")
                request = wire.parse(kind, body)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                return JSONResponse(wire.error(kind, 400, f"Tether: the body is not JSON: {exc}"), status_code=400)
            except wire.BadRequest as exc:
                return JSONResponse(wire.error(kind, 400, f"Tether: {exc}"), status_code=400)
            try:
                relayed = await run_in_threadpool(gateway.relay, _token(http), request, body, http.headers)
                if relayed is not None:  # the upstream speaks the agent's API: relayed as it is
                    if relayed.chunks is not None:
                        return StreamingResponse(_passed_on(relayed), status_code=relayed.status,
                                                 media_type=relayed.media_type, headers=relayed.headers)
                    return Response(relayed.content, status_code=relayed.status, media_type=relayed.media_type,
                                    headers=relayed.headers, background=BackgroundTask(relayed.finish))
                response = await run_in_threadpool(gateway.complete, _token(http), request)
            except Refused as refused:
                status = wire.refusal_status(kind, refused.kind)
                return JSONResponse(wire.error(kind, status, str(refused)), status_code=status)
            if request.stream:
                return StreamingResponse(wire.stream(request, response), media_type="text/event-stream")
            return JSONResponse(wire.render(request, response))
        return handle

    async def judged(agent: str, phase: str, http: HttpRequest, event: Any) -> dict[str, Any]:
        """The guard's verdict on one hook event (raises HookError or Refused)."""
        if not isinstance(event, dict):
            raise HookError("the hook event must be a JSON object")
        handle = gateway.pre_tool_use if phase == "pre" else gateway.post_tool_use
        decision = await run_in_threadpool(handle, _token(http), event, agent)
        verdict = "defer" if decision.verdict == "ask" and gateway.defers(_token(http)) else decision.verdict
        return {"verdict": verdict, "rule": decision.rule, "reason": decision.reason}

    async def hook(http: HttpRequest) -> Response:
        """For the command hook (hook.py), which answers the agent itself."""
        agent, phase = http.path_params["agent"], http.path_params["phase"]
        if agent not in AGENTS or phase not in ("pre", "post"):
            return JSONResponse({"error": f"no hook {agent}/{phase}: the agent is one of {', '.join(AGENTS)}, "
                                          "the phase pre or post"}, status_code=404)
        try:
            return JSONResponse(await judged(agent, phase, http, json.loads(await http.body() or b"null")))
        except (json.JSONDecodeError, UnicodeDecodeError, HookError) as exc:
            return JSONResponse({"error": f"Tether: bad hook event: {exc}"}, status_code=400)
        except Refused as refused:
            return JSONResponse({"error": str(refused)}, status_code=wire.refusal_status("chat", refused.kind))

    async def http_hook(http: HttpRequest) -> Response:
        """Claude Code's `"type": "http"` hook: the answer is the hook's output itself, and a call
        Tether cannot judge is refused in it (with the reason), whatever the hook's onFailure."""
        phase = "pre"
        try:
            event = json.loads(await http.body() or b"null")
            phase = hook_phase(event)
            answer = await judged("claude-code", phase, http, event)
        except (json.JSONDecodeError, UnicodeDecodeError, HookError, RuntimeError) as exc:
            answer = {"verdict": "deny", "rule": "hook.invalid", "reason": f"bad hook event: {exc}"}
        except Refused as refused:
            answer = {"verdict": "deny", "rule": f"gateway.{refused.kind}", "reason": str(refused)}
        said = reply("claude-code", phase, answer)
        return Response(b"" if said is None else json.dumps(said).encode(), media_type="application/json")

    async def models(http: HttpRequest) -> Response:  # some clients list models before they start
        return JSONResponse({"object": "list",
                             "data": [{"id": "tether-gateway", "object": "model", "owned_by": "tether"}]})

    routes = [Route(path, endpoint(kind), methods=["POST"]) for path, kind in ROUTES.items()]
    routes += [Route("/tether/hooks/claude-code", http_hook, methods=["POST"]),
               Route("/tether/hooks/{agent}/{phase}", hook, methods=["POST"]),
               Route("/v1/models", models, methods=["GET"])]
    return Starlette(routes=routes)
