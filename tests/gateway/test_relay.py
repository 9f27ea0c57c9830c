"""Relaying an agent's request to an upstream that speaks its API: the anthropic and openai SDKs as
the agents, the gateway on loopback, and an upstream on loopback that answers in the shapes the
providers document (thinking blocks, cache usage, custom tool calls, server-sent events, errors
with retry-after). What the upstream received and what the client got are compared with what was
sent; the run's log must hold the request, the reply's text, calls and usage."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.gateway.serve import free_port, serving
from tether.gateway.core import Gateway, issue_token
from tether.ledger import Ledger
from tether.policy import parse_policy

REAL_KEY = "sk-real-key-only-the-gateway-has"
THINKING = {"type": "thinking", "thinking": "Let me look at the file.", "signature": "sig-abc"}
MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
           "content": [THINKING, {"type": "text", "text": "Reading it."},
                       {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "/w/a.py"}}],
           "stop_reason": "tool_use", "stop_sequence": None,
           "usage": {"input_tokens": 100, "output_tokens": 20, "cache_creation_input_tokens": 30,
                     "cache_read_input_tokens": 50}}


def sse(events: list[dict[str, Any]], named: bool = True) -> Iterator[bytes]:
    for event in events:
        head = f"event: {event['type']}\n" if named else ""
        yield f"{head}data: {json.dumps(event)}\n\n".encode()


def anthropic_stream() -> list[dict[str, Any]]:
    start = {**MESSAGE, "content": [], "stop_reason": None, "usage": {**MESSAGE["usage"], "output_tokens": 1}}
    return [{"type": "message_start", "message": start},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Read"}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ing it."}},
            {"type": "content_block_stop", "index": 0},
            {"type": "content_block_start", "index": 1,
             "content_block": {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}},
            {"type": "content_block_delta", "index": 1,
             "delta": {"type": "input_json_delta", "partial_json": '{"file_path": '}},
            {"type": "content_block_delta", "index": 1,
             "delta": {"type": "input_json_delta", "partial_json": '"/w/a.py"}'}},
            {"type": "content_block_stop", "index": 1},
            {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
             "usage": {"output_tokens": 20}},
            {"type": "message_stop"}]


PATCH_CALL = {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_9", "name": "apply_patch",
              "input": "*** Begin Patch\n*** Add File: a.txt\n+x\n*** End Patch", "status": "completed"}
RESPONSE = {"id": "resp_1", "object": "response", "created_at": 1, "status": "completed", "model": "gpt-5",
            "output": [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"}, PATCH_CALL],
            "usage": {"input_tokens": 70, "output_tokens": 9, "total_tokens": 79}}


class Upstream:
    """A provider's API on loopback: records each request, answers from `replies` (by path)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.error: tuple[int, dict[str, Any], dict[str, str]] | None = None
        self.slow = False
        self.garbage = False

    def app(self) -> Starlette:
        async def handle(request: Request) -> Response:
            body = json.loads(await request.body())
            self.received.append({"path": request.url.path, "headers": dict(request.headers), "body": body})
            if self.garbage:
                return Response(b"<html>502 Bad Gateway</html>", media_type="text/html")
            if self.error is not None:
                status, error, headers = self.error
                return JSONResponse(error, status_code=status, headers=headers)
            stream = body.get("stream") is True
            if request.url.path == "/v1/messages":
                if stream:
                    return StreamingResponse(self._paced(sse(anthropic_stream())), media_type="text/event-stream")
                return JSONResponse(MESSAGE)
            if request.url.path == "/v1/responses":
                events = [{"type": "response.created", "response": {**RESPONSE, "status": "in_progress", "output": []}},
                          {"type": "response.output_item.done", "output_index": 0, "item": RESPONSE["output"][0]},
                          {"type": "response.output_item.done", "output_index": 1, "item": PATCH_CALL},
                          {"type": "response.completed", "response": RESPONSE}]
                return StreamingResponse(sse(events), media_type="text/event-stream") if stream \
                    else JSONResponse(RESPONSE)
            chunks = [{"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                       "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"},
                                    "finish_reason": None}]},
                      {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                       "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]}]
            if body.get("stream_options", {}).get("include_usage"):
                chunks.append({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                               "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 2,
                                                        "total_tokens": 13}})
            return StreamingResponse(self._paced(iter([*sse(chunks, named=False), b"data: [DONE]\n\n"])),
                                     media_type="text/event-stream")
        return Starlette(routes=[Route(path, handle, methods=["POST"]) for path in
                                 ("/v1/messages", "/v1/responses", "/v1/chat/completions")])

    def _paced(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            yield chunk
            if self.slow:
                time.sleep(0.3)


@contextmanager
def upstream_serving(upstream: Upstream) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(upstream.app(), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstream]:
    served = Upstream()
    with upstream_serving(served) as url:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", REAL_KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", f"{url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", REAL_KEY)
        yield served


def events_of(ledger: Ledger, run_id: str, kind: str) -> list[Any]:
    return [e.data for e in ledger.events(run_id) if e.type == kind]


def test_claude_codes_request_reaches_anthropic_as_written_and_the_reply_comes_back_whole(
        ledger: Ledger, upstream: Upstream):
    token, run_id = issue_token(ledger, "alice", "anthropic:claude-sonnet-4-5")
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    sent = [{"role": "user", "content": [{"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
                                         image]}]
    with serving(Gateway(ledger)) as url:
        client = anthropic.Anthropic(base_url=url, api_key=token, max_retries=0)
        reply = client.messages.create(model="whatever-the-agent-says", max_tokens=100, messages=sent,
                                       extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"})
    (received,) = upstream.received
    assert received["headers"]["x-api-key"] == REAL_KEY and token not in json.dumps(received)
    assert received["headers"]["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert received["body"]["model"] == "claude-sonnet-4-5" and received["body"]["messages"] == sent
    assert reply.model_dump(exclude_none=True)["content"][0] == THINKING  # nothing lost on the way back
    (response,) = events_of(ledger, run_id, "model_response")
    assert response.content == "Reading it." and response.tool_calls[0].arguments == {"file_path": "/w/a.py"}
    assert (response.usage.input_tokens, response.usage.output_tokens) == (180, 20)  # cache tokens count as input
    assert response.price_known and response.cost_usd > 0
    assert ledger.verify(run_id).ok


def test_a_streamed_reply_passes_as_it_comes_and_is_recorded_when_it_ends(ledger: Ledger, upstream: Upstream):
    token, run_id = issue_token(ledger, "alice", "anthropic:claude-sonnet-4-5")
    with serving(Gateway(ledger)) as url:
        client = anthropic.Anthropic(base_url=url, api_key=token, max_retries=0)
        with client.messages.stream(model="m", max_tokens=100, messages=[{"role": "user", "content": "go"}]) as s:
            final = s.get_final_message()
    assert [block.type for block in final.content] == ["text", "tool_use"]
    assert final.content[1].input == {"file_path": "/w/a.py"}
    (response,) = events_of(ledger, run_id, "model_response")
    assert response.content == "Reading it." and response.tool_calls[0].name == "Read"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (180, 20)


def test_codexs_custom_tools_and_reasoning_pass_the_responses_api_untouched(ledger: Ledger, upstream: Upstream):
    token, run_id = issue_token(ledger, "bob", "openai:gpt-5")
    tools = [{"type": "custom", "name": "apply_patch", "description": "patch", "format": {"type": "text"}}]
    hosted = [{"type": "web_search"}, {"type": "code_interpreter", "container": {"type": "auto"}}]
    with serving(Gateway(ledger)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0)
        with client.responses.stream(model="gpt-5", input="fix it", tools=[*tools, *hosted]) as stream:
            final = stream.get_final_response()
    assert [item.type for item in final.output] == ["reasoning", "custom_tool_call"]
    (received,) = upstream.received
    # the provider's own web search and code runner are network the policy does not allow
    assert received["body"]["tools"] == tools and received["headers"]["authorization"] == f"Bearer {REAL_KEY}"
    (response,) = events_of(ledger, run_id, "model_response")
    (call,) = response.tool_calls
    assert call.name == "apply_patch" and "Add File: a.txt" in call.arguments["input"]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (70, 9)


def test_a_chat_stream_is_asked_for_its_usage(ledger: Ledger, upstream: Upstream):
    token, run_id = issue_token(ledger, "carol", "openai:gpt-4o-mini")
    with serving(Gateway(ledger)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(
            model="x", messages=[{"role": "user", "content": "hi"}], stream=True) if chunk.choices)
    assert text == "Hello"
    assert upstream.received[0]["body"]["stream_options"] == {"include_usage": True}
    (response,) = events_of(ledger, run_id, "model_response")
    assert response.content == "Hello" and response.usage.input_tokens == 11 and response.price_known


def test_the_upstreams_own_errors_reach_the_agent_with_their_retry_hints(ledger: Ledger, upstream: Upstream):
    token, run_id = issue_token(ledger, "alice", "anthropic:claude-sonnet-4-5")
    upstream.error = (429, {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
                      {"retry-after": "7"})
    with serving(Gateway(ledger)) as url:
        answer = httpx.post(f"{url}/v1/messages", headers={"x-api-key": token},
                            json={"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]})
    assert answer.status_code == 429 and answer.headers["retry-after"] == "7"
    assert answer.json()["error"]["message"] == "slow down"
    (error,) = events_of(ledger, run_id, "model_error")
    assert error.transient and "429" in error.error
    assert events_of(ledger, run_id, "model_response") == []


def test_an_unreachable_upstream_is_a_502_in_the_agents_format(ledger: Ledger, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("ANTHROPIC_API_KEY", REAL_KEY)
    token, run_id = issue_token(ledger, "alice", "anthropic:claude-sonnet-4-5")
    with serving(Gateway(ledger)) as url:
        answer = httpx.post(f"{url}/v1/messages", headers={"x-api-key": token},
                            json={"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]})
    assert answer.status_code == 502 and answer.json()["type"] == "error"
    assert "could not be reached" in answer.json()["error"]["message"]
    assert REAL_KEY not in answer.text
    assert [e.type for e in ledger.events(run_id)][-2:] == ["model_request", "model_error"]


def test_a_refused_request_never_reaches_the_upstream(ledger: Ledger, upstream: Upstream):
    token, run_id = issue_token(ledger, "alice", "anthropic:claude-sonnet-4-5",
                                parse_policy("[budget]\nmax_steps = 1\n", Path("t.toml")))
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    with serving(Gateway(ledger)) as url:
        first = httpx.post(f"{url}/v1/messages", headers={"x-api-key": token}, json=body)
        second = httpx.post(f"{url}/v1/messages", headers={"x-api-key": token}, json=body)
    assert first.status_code == 200 and second.status_code == 402
    assert "budget.max_steps" in second.json()["error"]["message"]
    assert len(upstream.received) == 1
    decisions = events_of(ledger, run_id, "policy_decision")
    assert [d.rule for d in decisions] == ["budget.max_steps"]  # the refusal is recorded with its reason


def test_a_client_that_leaves_mid_stream_leaves_a_record_of_what_came(ledger: Ledger, upstream: Upstream):
    token, run_id = issue_token(ledger, "alice", "anthropic:claude-sonnet-4-5")
    upstream.slow = True
    body = {"model": "m", "max_tokens": 10, "stream": True, "messages": [{"role": "user", "content": "x"}]}
    with serving(Gateway(ledger)) as url:
        with httpx.stream("POST", f"{url}/v1/messages", headers={"x-api-key": token}, json=body) as answer:
            next(answer.iter_raw())  # the first event, then the agent is gone
        deadline = time.time() + 10
        while not events_of(ledger, run_id, "model_response"):
            assert time.time() < deadline, "the broken stream was never recorded"
            time.sleep(0.1)
    (response,) = events_of(ledger, run_id, "model_response")
    assert response.usage.input_tokens == 180  # message_start came: the prompt is counted
    assert ledger.verify(run_id).ok


def test_an_upstream_that_answers_garbage_is_a_clear_error_and_a_recorded_failure(ledger: Ledger, upstream: Upstream):
    token, run_id = issue_token(ledger, "bob", "openai:gpt-4o-mini")
    upstream.garbage = True
    with serving(Gateway(ledger)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0)
        with pytest.raises(openai.APIStatusError) as raised:
            client.chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 502 and "not JSON" in raised.value.message
    (error,) = events_of(ledger, run_id, "model_error")
    assert "502 Bad Gateway" in error.error and ledger.verify(run_id).ok


def test_a_relayed_reply_is_recorded_after_it_is_sent_and_before_the_next_request(ledger: Ledger,
                                                                                  upstream: Upstream):
    token, run_id = issue_token(ledger, "alice", "anthropic:claude-sonnet-4-5")
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    with serving(Gateway(ledger)) as url:
        assert httpx.post(f"{url}/v1/messages", headers={"x-api-key": token}, json=body).status_code == 200
        deadline = time.time() + 10
        while not events_of(ledger, run_id, "model_response"):  # no second request comes to record it
            assert time.time() < deadline, "the reply the agent got was never recorded"
            time.sleep(0.05)
        for _ in range(3):
            assert httpx.post(f"{url}/v1/messages", headers={"x-api-key": token}, json=body).status_code == 200
    kinds = [e.type for e in ledger.events(run_id)]
    assert kinds == ["run_started", *["model_request", "model_response"] * 4]
    assert ledger.verify(run_id).ok
