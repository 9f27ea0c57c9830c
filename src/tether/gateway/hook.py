"""The hook command Claude Code or Codex runs before and after each tool call:

    python -I -S .../tether/gateway/hook.py claude-code|codex [pre|post]    (the event as JSON on stdin)
    tether hook claude-code|codex                                          (the same, slower to start)

It asks the gateway, which puts the call to the run's guard and records it, and answers in the
agent's hook protocol (the same JSON for both; Codex's PreToolUse knows only deny, so an allow
is no answer, and an ask, which it cannot put to anyone, is a deny that says whose approval it
waits for). It imports nothing but json, os, socket and sys and speaks plain HTTP/1.1 to
the gateway on loopback itself (urllib's imports alone take 40 ms), so a decision takes about
as long as starting Python. Fails closed: a call the gateway cannot be asked about is blocked
(exit 2, the reason on stderr)."""

from __future__ import annotations

import json
import os
import socket
import sys

TIMEOUT_S = 30


AGENTS = ("claude-code", "codex")
PHASES = {"PreToolUse": "pre", "PostToolUse": "post"}


def _ask(agent: str, phase: str, body: bytes) -> dict:
    url = os.environ.get("TETHER_GATEWAY_URL") or os.environ.get("ANTHROPIC_BASE_URL") or ""
    token = os.environ.get("TETHER_GATEWAY_TOKEN") or os.environ.get("ANTHROPIC_API_KEY") or ""
    if not url or not token:
        raise RuntimeError("set TETHER_GATEWAY_URL and TETHER_GATEWAY_TOKEN (or ANTHROPIC_BASE_URL and "
                           "ANTHROPIC_API_KEY) to the gateway and its token")
    status, payload = _post(url, f"/tether/hooks/{agent}/{phase}", token, body)
    answer = json.loads(payload or b"{}")
    if status != 200:
        raise RuntimeError(answer.get("error", f"HTTP {status}"))
    return answer


def _post(url: str, path: str, token: str, body: bytes) -> tuple[int, bytes]:
    """POST over plain HTTP/1.1 (the gateway listens on loopback): (status, body)."""
    if not url.startswith("http://"):
        raise RuntimeError(f"the gateway URL must be http:// on loopback, not {url!r}")
    authority, _, prefix = url[len("http://"):].partition("/")
    host, _, port = authority.rpartition(":") if ":" in authority else (authority, "", "80")
    head = (f"POST /{prefix.strip('/') + '/' if prefix.strip('/') else ''}{path.lstrip('/')} HTTP/1.1\r\n"
            f"Host: {authority}\r\nContent-Type: application/json\r\nx-api-key: {token}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=TIMEOUT_S) as connection:
        connection.sendall(head.encode() + body)
        received = b"".join(iter(lambda: connection.recv(65536), b""))
    header, _, payload = received.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    if b"transfer-encoding: chunked" in header.lower():
        payload = _unchunk(payload)
    return int(lines[0].split(" ")[1]), payload


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + rest[:size], rest[size + 2:]
    return out


def hook_phase(event: object) -> str:
    """pre or post, from the event's own name (one hook for both events)."""
    name = event.get("hook_event_name") if isinstance(event, dict) else None
    if name not in PHASES:
        raise RuntimeError(f"hook_event_name must be PreToolUse or PostToolUse, not {name!r}")
    return PHASES[name]


def _parsed(body: bytes) -> object:
    try:
        return json.loads(body or b"null")
    except ValueError:
        return None


def reply(agent: str, phase: str, answer: dict) -> dict | None:
    """The gateway's verdict in the agent's hook protocol (None: nothing to say, the call goes on).
    The HTTP hook's answer is the same JSON as the command hook's output."""
    reason = f"Tether: {answer['rule']}: {answer['reason']}" if answer.get("rule") else "Tether: allowed"
    verdict = answer["verdict"]
    if phase == "pre" and agent == "codex" and verdict != "allow":
        if verdict in ("ask", "defer"):
            reason += (" (the run pauses until they decide, then goes on)" if verdict == "defer"
                       else " (ask them to approve it: Codex cannot wait for an approval here)")
        return {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
                                       "permissionDecisionReason": reason}}
    if phase == "pre" and agent != "codex":
        return {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": verdict,
                                       "permissionDecisionReason": reason}}
    if phase == "post" and verdict != "allow":
        return {"decision": "block", "reason": reason}
    return None


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[1] not in AGENTS or argv[2:] not in ([], ["pre"], ["post"]):
        print(f"usage: hook.py {'|'.join(AGENTS)} [pre|post]", file=sys.stderr)
        return 2
    agent, body = argv[1], sys.stdin.buffer.read()
    try:
        phase = argv[2] if len(argv) == 3 else hook_phase(_parsed(body))
        answer = _ask(agent, phase, body)
    except (OSError, RuntimeError, ValueError, IndexError) as exc:
        print(f"Tether could not judge this tool call, so it is blocked: {exc}", file=sys.stderr)
        return 2
    said = reply(agent, phase, answer)
    if said is not None:
        print(json.dumps(said))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
