"""Latency the model gateway adds, against the same upstream called directly in the same run.

Also the time a Claude Code hook takes to decide one tool call, process start included (target
under 50 ms), against starting the same Python alone.

Prints p50 and p99 per request through the gateway (the anthropic SDK over loopback HTTP, with the
guard, the token lookup and two appends to the event log) against the scripted upstream called
in-process, non-streamed, and the time to the first streamed byte. Target: under 2 ms added at p50.

    .venv/bin/python benchmarks/bench_gateway.py [--requests 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parents[1]))  # the tests' loopback server helper

from tests.gateway.serve import serving
from tether.gateway.agent_tools import claude_code_settings
from tether.gateway.core import Gateway, issue_token
from tether.ledger import Ledger
from tether.models.scripted import ScriptedProvider

console = Console()


def quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--hooks", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        turns = Path(tmp) / "turns.json"
        turns.write_text(json.dumps([{"content": "ok", "usage": {"input_tokens": 20, "output_tokens": 2}}]))
        messages = [{"role": "user", "content": "hello"}]
        provider = ScriptedProvider(turns)
        direct = []
        for _ in range(args.requests):
            started = time.perf_counter()
            provider.complete(messages, [], 64)
            direct.append(time.perf_counter() - started)
        ledger = Ledger(f"sqlite:///{Path(tmp) / 'gw.db'}")
        token, _ = issue_token(ledger, "bench", f"scripted:{turns}")
        body = json.dumps({"model": "m", "max_tokens": 64, "messages": messages}).encode()
        headers = {"content-type": "application/json", "x-api-key": token}
        with serving(Gateway(ledger)) as url:
            def call(stream: bool) -> float:
                data = body if not stream else body[:-1] + b', "stream": true}'
                request = urllib.request.Request(f"{url}/v1/messages", data=data, headers=headers)
                started = time.perf_counter()
                with urllib.request.urlopen(request) as response:
                    response.read(1)  # the first byte
                    first = time.perf_counter() - started
                    response.read()
                return first if stream else time.perf_counter() - started
            for _ in range(20):  # warm up connections, caches and the run's state
                call(False)
            through = [call(False) for _ in range(args.requests)]
            first_byte = [call(True) for _ in range(args.requests)]
            hook_env = {**os.environ, "TETHER_GATEWAY_URL": url, "TETHER_GATEWAY_TOKEN": token}
            command = claude_code_settings(sys.executable)["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
            hook = command.split(" ")
            start_only = [sys.executable, "-I", "-S", "-c", "pass"]
            hooks, starts = [], []
            for index in range(args.hooks):
                event = json.dumps({"tool_name": "Bash", "tool_input": {"command": f"echo {index}"},
                                    "tool_use_id": f"h{index}", "cwd": tmp})
                started = time.perf_counter()
                subprocess.run(hook, input=event, env=hook_env, capture_output=True, text=True, check=True)
                hooks.append(time.perf_counter() - started)
                started = time.perf_counter()
                subprocess.run(start_only, check=True)
                starts.append(time.perf_counter() - started)
        ledger.close()
    d50, d99 = quantiles(direct)
    g50, g99 = quantiles(through)
    s50, s99 = quantiles(first_byte)
    table = Table("measure", "p50", "p99", "against", title=f"model gateway, {args.requests} requests each")
    table.add_row("upstream called directly", f"{d50 * 1e3:.3f} ms", f"{d99 * 1e3:.3f} ms", "baseline")
    table.add_row("through the gateway", f"{g50 * 1e3:.3f} ms", f"{g99 * 1e3:.3f} ms",
                  f"+{(g50 - d50) * 1e3:.2f} ms at p50 (target < 2 ms), {g50 / d50:.0f}x")
    table.add_row("first streamed byte", f"{s50 * 1e3:.3f} ms", f"{s99 * 1e3:.3f} ms",
                  f"+{(s50 - d50) * 1e3:.2f} ms at p50")
    h50, h99 = quantiles(hooks)
    p50, _ = quantiles(starts)
    table.add_row("hook decision (process included)", f"{h50 * 1e3:.1f} ms", f"{h99 * 1e3:.1f} ms",
                  f"target < 50 ms; of it {p50 * 1e3:.1f} ms is starting Python")
    console.print(table)


if __name__ == "__main__":
    main()
