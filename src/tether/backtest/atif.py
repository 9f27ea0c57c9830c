"""ATIF, the Agent Trajectory Interchange Format (Harbor's RFC 0001, v1.4): imported like any
trajectory, and Tether's own runs exported in it, so other tools can read what Tether recorded.

    {"schema_version": "ATIF-v1.4", "session_id", "agent": {"name", "version", "model_name"},
     "steps": [{"step_id", "timestamp", "source": "user|agent|system", "message", "model_name",
                "tool_calls": [{"tool_call_id", "function_name", "arguments"}],
                "observation": {"results": [{"source_call_id", "content"}]},
                "metrics": {"prompt_tokens", "completion_tokens", "cost_usd"}}],
     "final_metrics": {"total_prompt_tokens", "total_completion_tokens", "total_cost_usd", "total_steps"},
     "extra": {...}}"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tether.backtest.trajectory import ImportedRun, ImportedStep, iso_ts
from tether.ledger import StoredEvent
from tether.ledger import events as ev

SCHEMA_VERSION = "ATIF-v1.4"


def is_atif(data: Any) -> bool:
    return isinstance(data, dict) and str(data.get("schema_version", "")).startswith("ATIF")


def import_atif(path: Path, data: dict[str, Any]) -> ImportedRun:
    agent = data.get("agent") if isinstance(data.get("agent"), dict) else {}
    steps: list[ImportedStep] = []
    task = ""
    for step in data.get("steps") or []:
        if not isinstance(step, dict):
            continue
        if step.get("source") == "user" and not task:
            task = str(step.get("message") or "")
        if step.get("source") != "agent":
            continue
        metrics = step.get("metrics") if isinstance(step.get("metrics"), dict) else {}
        results = ((step.get("observation") or {}).get("results") or []) if isinstance(step.get("observation"),
                                                                                      dict) else []
        by_call = {str(r.get("source_call_id")): r for r in results if isinstance(r, dict)}
        calls = [c for c in step.get("tool_calls") or [] if isinstance(c, dict)] or [{}]
        for position, call in enumerate(calls):
            arguments = call.get("arguments") if isinstance(call.get("arguments"), dict) else {}
            result = by_call.get(str(call.get("tool_call_id")), {})
            extra = result.get("extra") if isinstance(result.get("extra"), dict) else {}
            command = arguments.get("command", arguments.get("cmd", arguments.get("keystrokes")))
            steps.append(ImportedStep(
                command=(str(command) if command is not None else
                         f"{call.get('function_name', '')} {json.dumps(arguments, sort_keys=True)}") if call else "",
                output=str(result.get("content") or ""),
                exit_code=extra.get("exit_code") if isinstance(extra.get("exit_code"), int) else
                (1 if extra.get("is_error") else None),
                content=str(step.get("message") or ""),
                input_tokens=int(metrics.get("prompt_tokens") or 0) if position == 0 else 0,
                output_tokens=int(metrics.get("completion_tokens") or 0) if position == 0 else 0,
                cost_usd=float(metrics.get("cost_usd") or 0.0) if position == 0 else 0.0,
                ts=iso_ts(step.get("timestamp"))))
    final = data.get("final_metrics") if isinstance(data.get("final_metrics"), dict) else {}
    total = float(final.get("total_cost_usd") or sum(s.cost_usd for s in steps))
    extra = data.get("extra") if isinstance(data.get("extra"), dict) else {}
    return ImportedRun(source="atif", path=str(path), instance_id=str(extra.get("instance_id")
                                                                       or data.get("session_id") or path.stem),
                       agent=f"{agent.get('name', 'unknown')} {agent.get('version', '')}".strip(),
                       model=str(agent.get("model_name") or "unknown"), task=task[:2000], steps=steps,
                       resolved=extra.get("resolved") if isinstance(extra.get("resolved"), bool) else None,
                       exit_status=None, total_cost_usd=total)


def export_atif(run_id: str, events: list[StoredEvent]) -> dict[str, Any]:
    """A Tether run as ATIF: its task, each model reply with its tool calls and their results, the
    guard's refusals as system steps, and its outcome in `extra`."""
    started = next((e.data for e in events if isinstance(e.data, ev.RunStarted)), None)
    finished = next((e.data for e in events if isinstance(e.data, ev.RunFinished)), None)
    results = {e.data.call_id: e.data for e in events if isinstance(e.data, ev.ToolResult)}
    steps: list[dict[str, Any]] = []

    def add(step: dict[str, Any], ts: float) -> None:
        steps.append({"step_id": len(steps) + 1, "timestamp": datetime.fromtimestamp(ts, UTC).isoformat(), **step})
    model = started.model if started is not None else None
    if started is not None:
        add({"source": "user", "message": started.task}, events[0].ts)
    totals = {"prompt": 0, "completion": 0, "usd": 0.0}
    for event in events:
        payload = event.data
        if isinstance(payload, ev.ModelResponse):
            totals["prompt"] += payload.usage.input_tokens
            totals["completion"] += payload.usage.output_tokens
            totals["usd"] += payload.cost_usd
            step: dict[str, Any] = {"source": "agent", "model_name": payload.model or model,
                                    "message": payload.content,
                                    "metrics": {"prompt_tokens": payload.usage.input_tokens,
                                                "completion_tokens": payload.usage.output_tokens,
                                                "cost_usd": payload.cost_usd}}
            if payload.tool_calls:
                step["tool_calls"] = [{"tool_call_id": c.id, "function_name": c.name, "arguments": c.arguments}
                                      for c in payload.tool_calls]
                step["observation"] = {"results": [
                    {"source_call_id": c.id, "content": results[c.id].observation,
                     "extra": {"exit_code": results[c.id].exit_code, "executed": results[c.id].executed}}
                    for c in payload.tool_calls if c.id in results]}
            add(step, event.ts)
        elif isinstance(payload, ev.PolicyDecision | ev.Brake) and getattr(payload, "verdict", "stop") != "allow":
            rule = payload.rule if isinstance(payload, ev.PolicyDecision) else f"brakes.{payload.detector}"
            add({"source": "system", "message": f"tether {rule}: {payload.reason}"}, event.ts)
    return {
        "schema_version": SCHEMA_VERSION, "session_id": run_id,
        "agent": {"name": "tether", "version": "1", "model_name": model or "unknown",
                  "extra": {"architecture": started.architecture if started is not None else None}},
        "steps": steps,
        "final_metrics": {"total_prompt_tokens": totals["prompt"], "total_completion_tokens": totals["completion"],
                          "total_cost_usd": round(totals["usd"], 6), "total_steps": len(steps)},
        "extra": {"status": finished.status if finished is not None else None,
                  "resolved": finished.status == ev.RunStatus.SUCCEEDED if finished is not None else None,
                  "reason": finished.reason if finished is not None else None, "repo": started.repo if started
                  else None, "base_commit": started.base_commit if started else None},
    }
