"""Latency the model gateway adds, against the same upstream called directly in the same run.

The upstream is an HTTP server on loopback speaking the Anthropic Messages API with a fixed reply
(in its own process, as a provider's API is). The client sends the same request over a kept-alive
connection (as the agents' SDKs do) to it directly, and to `tether gateway serve` (its own
process, a SQLite store), which checks the token, the budgets and the kill switch, records the
request and the reply, and relays the request to the upstream (http.client, kept alive). Printed: p50 and p99 per
request, non-streamed, and the time to the first streamed byte; the gateway's own work measured
in-process (no HTTP) says what dominates. Target (issue 35): under 1 ms added at p50, 3 ms at p99.

Also the time a hook takes to decide one tool call: Claude Code's HTTP hook, answered in the
gateway's process (target under 3 ms at p50), against a no-op request to the same server (the HTTP
floor); and the command hook (Codex has no other), process start included, against starting the
same Python alone.

    .venv/bin/python benchmarks/bench_gateway.py [--requests 300]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tether.gateway.agent_tools import HOOK_SCRIPT, HTTP_HOOK_PATH
from tether.gateway.core import Gateway, issue_token
from tether.gateway.wire import parse
from tether.ledger import Ledger

console = Console()
REPLY = {"id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
         "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None,
         "usage": {"input_tokens": 20, "output_tokens": 2}}
ROUNDS = 5
BODY = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]}


def upstream_app() -> object:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def messages(request: object) -> JSONResponse:
        return JSONResponse(REPLY)
    return Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(port: int, process: subprocess.Popen) -> None:
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                raise SystemExit(f"the server on port {port} did not start") from None
            time.sleep(0.05)


def quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def timed_requests(port: int, token: str, count: int, stream: bool = False) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port)
    body = json.dumps({**BODY, "stream": True} if stream else BODY)
    headers = {"content-type": "application/json", "x-api-key": token}
    samples = []
    for _ in range(count + 20):  # the first 20 warm the connection, caches and the run's state
        started = time.perf_counter()
        connection.request("POST", "/v1/messages", body, headers)
        response = connection.getresponse()
        response.read(1)
        first = time.perf_counter() - started
        response.read()
        if response.status != 200:
            raise SystemExit(f"HTTP {response.status} from port {port}")
        samples.append(first if stream else time.perf_counter() - started)
    connection.close()
    return samples[20:]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--hooks", type=int, default=50)
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        import uvicorn

        uvicorn.run(upstream_app(), host="127.0.0.1", port=args.serve_upstream, log_level="error")
        return
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{Path(tmp) / 'gw.db'}"
        ledger = Ledger(db)
        token, _ = issue_token(ledger, "bench", "anthropic:claude-sonnet-4-5")
        upstream_port, gateway_port = free_port(), free_port()
        env = {**os.environ, "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{upstream_port}",
               "ANTHROPIC_API_KEY": "sk-bench-not-a-key"}
        upstream = subprocess.Popen([sys.executable, __file__, "--serve-upstream", str(upstream_port)])
        gateway = subprocess.Popen([sys.executable, "-m", "tether", "gateway", "serve", "--port", str(gateway_port),
                                    "--db", db], env=env, cwd=tmp, stderr=subprocess.DEVNULL)
        try:
            wait_for(upstream_port, upstream)
            wait_for(gateway_port, gateway)
            direct, through, first_byte = [], [], []
            for _ in range(ROUNDS):  # taken in turns, so a busy moment of the machine weighs on each alike
                direct += timed_requests(upstream_port, "sk-bench", args.requests // ROUNDS)
                through += timed_requests(gateway_port, token, args.requests // ROUNDS)
                first_byte += timed_requests(gateway_port, token, args.requests // ROUNDS, stream=True)
            in_process = gateway_work(ledger, env, args.requests)
            hooks, starts = hook_times(gateway_port, token, tmp, args.hooks)
            http_hooks, no_ops = http_hook_times(gateway_port, token, tmp, args.requests)
        finally:
            for process in (gateway, upstream):
                process.terminate()
                process.wait()
        ledger.close()
    d50, d99 = quantiles(direct)
    g50, g99 = quantiles(through)
    s50, s99 = quantiles(first_byte)
    w50, w99 = quantiles(in_process)
    table = Table("measure", "p50", "p99", "against", title=f"model gateway, {args.requests} requests each")
    table.add_row("upstream called directly (HTTP)", f"{d50 * 1e3:.3f} ms", f"{d99 * 1e3:.3f} ms", "baseline")
    table.add_row("through the gateway", f"{g50 * 1e3:.3f} ms", f"{g99 * 1e3:.3f} ms",
                  f"+{(g50 - d50) * 1e3:.2f} ms at p50 (target < 1 ms), {g50 / d50:.1f}x")
    table.add_row("first streamed byte", f"{s50 * 1e3:.3f} ms", f"{s99 * 1e3:.3f} ms",
                  f"+{(s50 - d50) * 1e3:.2f} ms at p50, {s50 / d50:.1f}x")
    table.add_row("of it: the gateway's own work", f"{w50 * 1e3:.3f} ms", f"{w99 * 1e3:.3f} ms",
                  "in-process, no HTTP server: token, guard, kill switch, the request's append, the relayed call")
    n50, n99 = quantiles(no_ops)
    table.add_row("no-op request to the gateway (new connection)", f"{n50 * 1e3:.3f} ms", f"{n99 * 1e3:.3f} ms",
                  "baseline for the HTTP hook")
    x50, x99 = quantiles(http_hooks)
    table.add_row("HTTP hook decision (Claude Code)", f"{x50 * 1e3:.3f} ms", f"{x99 * 1e3:.3f} ms",
                  f"target < 3 ms p50; {x50 / n50:.1f}x the no-op, +{(x50 - n50) * 1e3:.2f} ms")
    h50, h99 = quantiles(hooks)
    p50, _ = quantiles(starts)
    table.add_row("command hook decision (process included)", f"{h50 * 1e3:.1f} ms", f"{h99 * 1e3:.1f} ms",
                  f"{h50 / p50:.1f}x starting Python alone ({p50 * 1e3:.1f} ms); {h50 / x50:.0f}x the HTTP hook")
    console.print(table)


def gateway_work(ledger: Ledger, env: dict[str, str], count: int) -> list[float]:
    """Gateway.relay alone (no HTTP in front), against the same upstream over loopback; the reply is
    recorded after it is timed, as the server records it after sending it."""
    os.environ.update(ANTHROPIC_BASE_URL=env["ANTHROPIC_BASE_URL"], ANTHROPIC_API_KEY=env["ANTHROPIC_API_KEY"])
    token, _ = issue_token(ledger, "bench-in-process", "anthropic:claude-sonnet-4-5")
    gateway = Gateway(ledger)
    request = parse("anthropic", BODY)
    samples = []
    for _ in range(count + 20):
        started = time.perf_counter()
        relayed = gateway.relay(token, request, BODY, {})
        samples.append(time.perf_counter() - started)
        assert relayed is not None
        relayed.finish()  # as the server does once the reply is sent
    return samples[20:]


def hook_times(port: int, token: str, cwd: str, count: int) -> tuple[list[float], list[float]]:
    env = {**os.environ, "TETHER_GATEWAY_URL": f"http://127.0.0.1:{port}", "TETHER_GATEWAY_TOKEN": token}
    hook = [sys.executable, "-I", "-S", str(HOOK_SCRIPT), "claude-code", "pre"]
    hooks, starts = [], []
    for index in range(count):
        event = json.dumps({"tool_name": "Bash", "tool_input": {"command": f"echo {index}"},
                            "tool_use_id": f"h{index}", "cwd": cwd})
        started = time.perf_counter()
        subprocess.run(hook, input=event, env=env, capture_output=True, text=True, check=True)
        hooks.append(time.perf_counter() - started)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], check=True)
        starts.append(time.perf_counter() - started)
    return hooks, starts


def http_hook_times(port: int, token: str, cwd: str, count: int) -> tuple[list[float], list[float]]:
    """Claude Code's HTTP hook, a new connection per call (as a hook that keeps none), against a
    no-op GET to the same server."""
    headers = {"content-type": "application/json", "x-api-key": token}
    hooks, no_ops = [], []
    for index in range(count + 20):
        event = json.dumps({"hook_event_name": "PreToolUse", "tool_name": "Bash",
                            "tool_input": {"command": f"echo {index}"}, "tool_use_id": f"x{index}", "cwd": cwd})
        pairs = (("POST", HTTP_HOOK_PATH, event, hooks), ("GET", "/v1/models", None, no_ops))
        for method, path, body, samples in pairs:
            started = time.perf_counter()
            connection = http.client.HTTPConnection("127.0.0.1", port)
            connection.request(method, path, body, headers)
            response = connection.getresponse()
            response.read()
            connection.close()
            samples.append(time.perf_counter() - started)
            if response.status != 200:
                raise SystemExit(f"HTTP {response.status} from {path}")
    return hooks[20:], no_ops[20:]


if __name__ == "__main__":
    main()
