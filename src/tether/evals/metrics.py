"""A cell's row and a config's summary. A row is read from the run's events (the record) and the
cell's score; a summary is computed from rows, so `tether eval report` rebuilds both exactly."""

from __future__ import annotations

from typing import Any

from tether.ledger import StoredEvent
from tether.ledger import events as ev
from tether.ledger.queries import finished_of, summarize
from tether.ledger.store import RunRow
from tether.stats import percentile, wilson

CAP_RULES = ("writes.max_files", "writes.max_lines")
STOP_KINDS = ("brakes.", "budget.")


def check_rework(events: list[StoredEvent]) -> int:
    """Required-check failures before the required checks last passed (all of them if they never did)."""
    outcomes = [e.data.passed for e in events if isinstance(e.data, ev.CheckFinished) and e.data.required]
    last_pass = max((i for i, passed in enumerate(outcomes) if passed), default=len(outcomes))
    return sum(1 for passed in outcomes[:last_pass] if not passed)


def _latency(events: list[StoredEvent]) -> float:
    """Seconds the run was being worked on: from each start or resume to the next pause or end."""
    total, since = 0.0, None
    for event in events:
        if isinstance(event.data, ev.RunStarted | ev.RunContinued | ev.RunResumed):
            since = event.ts if since is None else since
        elif isinstance(event.data, ev.RunPaused | ev.RunFinished) and since is not None:
            total, since = total + event.ts - since, None
    if since is not None and events:
        total += events[-1].ts - since
    return round(total, 3)


def cell_row(task: str, config: str, repeat: int, run: RunRow, events: list[StoredEvent],
             score: dict[str, Any]) -> dict[str, Any]:
    summary = summarize(run, events)
    finished = finished_of(events)
    rule = finished.rule if finished else ""
    passed_visible, passed_hidden = score["visible"]["passed"], score["hidden"]["passed"]
    return {
        "task": task, "config": config, "repeat": repeat, "run_id": run.id,
        "status": summary["status"], "stop_rule": rule if summary["status"] == "stopped" else "",
        "passed_visible": passed_visible, "passed_hidden": passed_hidden,
        "escaped_defect": passed_visible and not passed_hidden,
        # the run said it was done, and the hidden check says it was not
        "false_success": summary["status"] == "succeeded" and not passed_hidden,
        "latency_s": _latency(events), "tokens": summary["usage"]["tokens"], "usd": summary["usage"]["usd"],
        "steps": summary["usage"]["steps"], "interrupts": summary["interrupts"],
        "stops": int(summary["status"] == "stopped" and rule.startswith(STOP_KINDS)),
        "rework": check_rework(events), "rework_lines": score.get("rework_lines", 0),
        "cap_hits": sum(1 for e in events if isinstance(e.data, ev.PolicyDecision) and e.data.rule in CAP_RULES),
    }


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize_config(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    solved = [r for r in rows if r["passed_hidden"]]
    visible = [r for r in rows if r["passed_visible"]]
    claimed = [r for r in rows if r["status"] == "succeeded"]
    escaped = [r for r in rows if r["escaped_defect"]]
    false_successes = [r for r in rows if r["false_success"]]
    latencies = [r["latency_s"] for r in rows]
    low, high = wilson(len(solved), n)
    return {
        "runs": n, "solved": len(solved), "pass_rate": len(solved) / n if n else 0.0, "pass_rate_ci": [low, high],
        "visible_pass_rate": len(visible) / n if n else 0.0,
        "latency_p50_s": percentile(latencies, 50), "latency_p95_s": percentile(latencies, 95),
        "tokens_per_task": _mean([r["tokens"] for r in rows]),
        "usd_per_task": _mean([r["usd"] for r in rows]),
        "tokens_per_solved": sum(r["tokens"] for r in rows) / len(solved) if solved else None,
        "usd_per_solved": sum(r["usd"] for r in rows) / len(solved) if solved else None,
        "interrupts": sum(r["interrupts"] for r in rows),
        "brake_stops": sum(1 for r in rows if r["stops"] and r["stop_rule"].startswith("brakes.")),
        "budget_stops": sum(1 for r in rows if r["stops"] and r["stop_rule"].startswith("budget.")),
        "rework": sum(r["rework"] for r in rows), "rework_lines": sum(r["rework_lines"] for r in rows),
        "escaped_defects": len(escaped), "escaped_defect_rate": len(escaped) / len(visible) if visible else None,
        "succeeded": len(claimed), "false_successes": len(false_successes),
        "false_success_rate": len(false_successes) / len(claimed) if claimed else None,
        "cap_hits": sum(r["cap_hits"] for r in rows),
    }
