"""What telemetry costs, against baselines measured in the same run.

    .venv/bin/python benchmarks/bench_telemetry.py [--steps 200] [--repo ../shared/data/repos/sqlite-utils.bundle]

Prints: the live OTLP export's cost per event (spans and metrics made and batched to a loopback
collector) against a guarded step without it (target under 0.5 ms per event); and `tether report`
on a real history against `git log` alone over the same history."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from rich.console import Console

from tether.ledger import Ledger
from tether.policy import parse_policy
from tether.runner import RunSpec, start_run

SAMPLE = Path(__file__).parents[1] / "src" / "tether" / "samples" / "raindrops"
console = Console()


class Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def run_once(root: Path, steps: int, tag: str) -> tuple[float, int]:
    """(seconds per step of a guarded run of `steps` file writes, events written)."""
    repo = root / f"repo-{tag}"
    subprocess.run(["cp", "-r", str(SAMPLE), str(repo)], check=True)
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.email=b@b", "-c", "user.name=b", "commit", "-qm", "s"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    turns = [{"tool_calls": [{"name": "write_file", "arguments": {"path": "notes.txt", "content": f"v{i % 2}\n"}}]}
             for i in range(steps)]
    script = root / f"turns-{tag}.json"
    script.write_text(json.dumps(turns))
    ledger = Ledger(f"sqlite:///{root / f'{tag}.db'}")
    policy = parse_policy(f'[budget]\nmax_steps = {steps + 1}\n[sandbox]\nmode = "none"\n'
                          "[brakes]\nrepeat_output_max = 1000\n", Path("b.toml"))
    started = time.perf_counter()
    summary = start_run(ledger, RunSpec("bench", repo, policy, model=f"scripted:{script}"))
    elapsed = time.perf_counter() - started
    events = summary["events"]
    ledger.close()
    return elapsed / steps, events


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repo", default=str(Path(__file__).parents[2] / "shared" / "data" / "repos"
                                              / "sqlite-utils.bundle"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        without, _ = run_once(root, args.steps, "off")
        server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{server.server_address[1]}"
        with_export, events = run_once(root, args.steps, "on")
        from tether.telemetry.export import live
        telemetry = live()
        if telemetry is not None:
            telemetry.shutdown()  # before the collector goes: nothing left to send at exit
        server.shutdown()
        per_event = (with_export - without) * args.steps / events
        console.print(f"guarded step without telemetry: {without * 1e3:.2f} ms; with live OTLP export: "
                      f"{with_export * 1e3:.2f} ms ({with_export / without:.2f}x)")
        console.print(f"export cost per event: {per_event * 1e3:.3f} ms ({events} events; target < 0.5 ms)")
        bundle = Path(args.repo)
        if not bundle.exists():
            console.print(f"[yellow]no history at {bundle}: the report is not measured[/]")
            return
        clone = root / "history"
        subprocess.run(["git", "clone", "-q", str(bundle), str(clone)], check=True)
        started = time.perf_counter()
        subprocess.run(["git", "log", "--format=%H%x1f%ct%x1f%ae%x1f%B%x1e"], cwd=clone, check=True,
                       capture_output=True)
        log = time.perf_counter() - started
        from tether.history.report import build
        started = time.perf_counter()
        report = build(None, clone, None, 30, attribute=r"Co-Authored-By: Claude|Generated with \[?Claude Code")
        built = time.perf_counter() - started
        console.print(f"git log over the history: {log * 1e3:.0f} ms; tether report ({len(report.rows)} changes): "
                      f"{built:.1f} s ({built / log:.0f}x git log)")


if __name__ == "__main__":
    main()
