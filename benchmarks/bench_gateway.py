"""Latency the model gateway adds, against the same upstream called directly in the same run.

Prints p50 and p99 per request through the gateway (the anthropic SDK over loopback HTTP, with the
guard, the token lookup and two appends to the event log) against the scripted upstream called
in-process, non-streamed, and the time to the first streamed byte. Target: under 2 ms added at p50.

    .venv/bin/python benchmarks/bench_gateway.py [--requests 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parents[1]))  # the tests' loopback server helper

from tests.gateway.serve import serving
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
    console.print(table)


if __name__ == "__main__":
    main()
