"""Import and backtest speed on the shared trajectories.

    .venv/bin/python benchmarks/bench_backtest.py [DATA]   (default: ../shared/data/trajectories)

Targets: all runs imported into the ledger in under 30 s; over 20,000 steps/s in the backtest.
The baseline is a bare loop over the same events that only unpacks them. The other formats are
timed on the same runs written in their shapes (ATIF by Tether's own export; Codex rollouts and
Claude Code transcripts as the lines those CLIs write), against parsing the native files."""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tether.backtest.atif import export_atif
from tether.backtest.engine import backtest_run
from tether.backtest.importers import load_runs
from tether.backtest.store import store_run
from tether.backtest.trajectory import ImportedRun
from tether.ledger import Ledger
from tether.policy import Policy, parse_policy

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "trajectories"
# Every brake the sweep tries, at a value that lets runs go on (so each reads every step).
EVERY_DETECTOR = parse_policy("""
[brakes]
repeat_output_max = 50
stale_test_cycles = 50
burn_rate_factor = 50.0
stale_failing_cycles = 50
error_repeat_max = 500
max_steps_after_edit_without_change = 500
seen_output_share = 1.0
churn_max = 500
""", Path("every-detector.toml"))


def as_rollout(run: ImportedRun) -> list[dict]:
    """A run's steps in the lines a Codex rollout holds (a call, its output, its tokens)."""
    lines: list[dict] = [{"type": "session_meta", "payload": {"id": run.run_id}},
                         {"type": "turn_context", "payload": {"model": run.model}}]
    for number, step in enumerate(run.steps):
        call = f"call_{number}"
        lines += [{"type": "response_item", "payload": {"type": "function_call", "name": "exec_command",
                                                        "arguments": json.dumps({"cmd": step.command}),
                                                        "call_id": call}},
                  {"type": "response_item", "payload": {"type": "function_call_output", "call_id": call,
                                                        "output": f"Process exited with code {step.exit_code or 0}\n"
                                                                  + step.output}},
                  {"type": "event_msg", "payload": {"type": "token_count", "info": {"last_token_usage": {
                      "input_tokens": step.input_tokens, "output_tokens": step.output_tokens}}}}]
    return lines


def as_transcript(run: ImportedRun) -> list[dict]:
    """A run's steps in the lines a Claude Code transcript holds (a tool use, its result)."""
    lines: list[dict] = [{"type": "user", "sessionId": run.run_id, "message": {"role": "user", "content": run.task}}]
    for number, step in enumerate(run.steps):
        call = f"toolu_{number}"
        lines += [{"type": "assistant", "sessionId": run.run_id, "message": {
                      "id": f"msg_{number}", "model": "claude-sonnet-4-5", "role": "assistant",
                      "usage": {"input_tokens": step.input_tokens, "output_tokens": step.output_tokens},
                      "content": [{"type": "tool_use", "id": call, "name": "Bash",
                                   "input": {"command": step.command}}]}},
                  {"type": "user", "sessionId": run.run_id, "message": {"role": "user", "content": [
                      {"type": "tool_result", "tool_use_id": call, "content": step.output}]}}]
    return lines


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    console = Console()
    started = time.perf_counter()
    runs = list(load_runs(sorted(p for p in data.iterdir() if p.is_dir())))
    parse_s = time.perf_counter() - started
    steps = sum(len(run.steps) for run in runs)

    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(f"sqlite:///{Path(tmp) / 'import.db'}")
        started = time.perf_counter()
        stored = [store_run(ledger, run) for run in runs]
        store_s = time.perf_counter() - started
        events = sum(result.events for result in stored)
        # The same runs as ATIF files (Tether's export), then read back by the importer.
        atif = Path(tmp) / "atif"
        atif.mkdir()
        started = time.perf_counter()
        for result in stored:
            (atif / f"{result.run_id}.atif.json").write_text(json.dumps(export_atif(result.run_id,
                                                                                     ledger.events(result.run_id))))
        export_s = time.perf_counter() - started
        started = time.perf_counter()
        reread = sum(len(run.steps) for run in load_runs([atif]))
        atif_s = time.perf_counter() - started
        ledger.close()
        # And as the agents' own session logs: the same steps written in their line shapes.
        sessions = {}
        for kind, writer in (("Codex rollouts", as_rollout), ("Claude Code transcripts", as_transcript)):
            folder = Path(tmp) / kind.split()[0]
            folder.mkdir()
            for number, run in enumerate(runs):
                name = f"rollout-{number}.jsonl" if kind.startswith("Codex") else f"{uuid.UUID(int=number)}.jsonl"
                (folder / name).write_text("".join(json.dumps(line) + "\n" for line in writer(run)))
            started = time.perf_counter()
            count = sum(len(run.steps) for run in load_runs([folder]))
            sessions[kind] = (count, time.perf_counter() - started)

    recorded = [run.events() for run in runs]
    started = time.perf_counter()
    for run_events in recorded:
        for _payload, _ts in run_events:
            pass
    bare_s = time.perf_counter() - started
    rates = {}
    for name, policy in (("default policy", Policy()), ("every detector on", EVERY_DETECTOR)):
        started = time.perf_counter()
        for run, run_events in zip(runs, recorded, strict=True):
            backtest_run(policy, run, run_events)
        rates[name] = time.perf_counter() - started

    table = Table("measure", "value", "against", title=f"{len(runs)} runs, {steps:,} steps, {events:,} events")
    table.add_row("parse all trajectories", f"{parse_s:.1f} s", "")
    table.add_row("store them in the ledger (SQLite)", f"{store_s:.1f} s", "")
    table.add_row("import, parse + store", f"{parse_s + store_s:.1f} s", "target < 30 s")
    table.add_row("parse, native formats", f"{steps / parse_s:,.0f} steps/s", "baseline for the formats")
    table.add_row("export as ATIF", f"{steps / export_s:,.0f} steps/s", f"{len(runs)} files")
    table.add_row("parse ATIF", f"{reread / atif_s:,.0f} steps/s", f"{parse_s / atif_s * reread / steps:.2f}x native")
    for kind, (count, seconds) in sessions.items():
        table.add_row(f"parse {kind}", f"{count / seconds:,.0f} steps/s",
                      f"{parse_s / seconds * count / steps:.2f}x native")
    table.add_row("bare loop over the events", f"{steps / bare_s:,.0f} steps/s", "baseline")
    for name, backtest_s in rates.items():
        table.add_row(f"backtest, {name}", f"{steps / backtest_s:,.0f} steps/s",
                      f"{backtest_s / bare_s:.0f}x the bare loop; target > 20,000 steps/s")
    console.print(table)


if __name__ == "__main__":
    main()
