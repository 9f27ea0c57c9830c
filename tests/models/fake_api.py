"""A real HTTP server on loopback that answers like the OpenAI or Anthropic API, from a queue of
canned (status, body, headers) replies, and records what it was sent."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, dict[str, Any], dict[str, str]]


@contextmanager
def api_server(replies: list[Reply], delay_s: float = 0.0) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """`delay_s`: how long each reply takes, as a slow or hung upstream's would."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            received.append({"path": self.path, "body": json.loads(self.rfile.read(length))})
            status, body, headers = replies.pop(0) if replies else (500, {"error": "no reply left"}, {})
            time.sleep(delay_s)
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (a slow reply): nobody to answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def openai_reply(content: str = "", calls: list[tuple[str, str, dict | str]] = (), model: str = "gpt-4o-mini",
                 usage: tuple[int, int] = (120, 30)) -> Reply:
    tool_calls = [{"id": cid, "type": "function",
                   "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}
                  for cid, name, args in calls]
    message: dict[str, Any] = {"role": "assistant", "content": content or None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return (200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
                  "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
                  "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                            "total_tokens": usage[0] + usage[1]}}, {})


def anthropic_reply(text: str = "", calls: list[tuple[str, str, dict]] = (), usage: tuple[int, int] = (200, 40),
                    model: str = "claude-haiku-4-5") -> Reply:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [{"type": "tool_use", "id": cid, "name": name, "input": args} for cid, name, args in calls]
    return (200, {"id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": content,
                  "stop_reason": "tool_use" if calls else "end_turn", "stop_sequence": None,
                  "usage": {"input_tokens": usage[0], "output_tokens": usage[1]}}, {})
