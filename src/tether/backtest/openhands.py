"""OpenHands' event stream as an imported run: a JSON list of events (or an evaluation record with the
list under "history"). An action event ({"id", "source": "agent", "action": "run|edit|read|...",
"args", "llm_metrics": {"accumulated_cost", ...}}) is a step; the observation whose "cause" is its
id is its output ("extras.metadata.exit_code" for a command). The cost of a step is the growth of
the accumulated cost since the action before it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tether.backtest.trajectory import ImportedRun, ImportedStep, iso_ts

NOT_STEPS = {"system", "message", "recall", "think", "change_agent_state", "null"}


def _command(action: str, args: dict[str, Any]) -> str:
    if action == "run":
        return str(args.get("command", ""))
    if action == "run_ipython":
        return f"python -c {json.dumps(args.get('code', ''))}"
    path = args.get("path", "")
    if action == "edit":
        sub = str(args.get("command") or "edit")
        return f"cat {path}" if sub == "view" else f"{'create' if sub == 'create' else 'edit'} {path}"
    if action == "read":
        return f"cat {path}"
    if action == "write":
        return f"create {path}"
    return f"{action} {json.dumps(args, sort_keys=True)}"


def import_openhands(path: Path, data: dict[str, Any]) -> ImportedRun:
    history = [event for event in data.get("history") or [] if isinstance(event, dict)]
    observations = {event.get("cause"): event for event in history if "observation" in event}
    steps: list[ImportedStep] = []
    spent = 0.0
    model = "unknown"
    task = ""
    for event in history:
        action = event.get("action")
        if action is None:
            continue
        if event.get("source") == "user" and action == "message" and not task:
            task = str((event.get("args") or {}).get("content") or event.get("message") or "")
        if event.get("source") != "agent" or action in NOT_STEPS or action == "finish":
            continue
        metrics = event.get("llm_metrics") if isinstance(event.get("llm_metrics"), dict) else {}
        accumulated = float(metrics.get("accumulated_cost") or spent)
        tokens = metrics.get("accumulated_token_usage") if isinstance(metrics.get("accumulated_token_usage"),
                                                                      dict) else {}
        model = str(tokens.get("model") or (event.get("tool_call_metadata") or {}).get("model_response", {})
                    .get("model") or model)
        observation = observations.get(event.get("id"), {})
        extras = observation.get("extras") if isinstance(observation.get("extras"), dict) else {}
        metadata = extras.get("metadata") if isinstance(extras.get("metadata"), dict) else {}
        code = metadata.get("exit_code")
        steps.append(ImportedStep(
            command=_command(str(action), event.get("args") or {}), output=str(observation.get("content") or ""),
            exit_code=code if isinstance(code, int) else (1 if observation.get("observation") == "error" else None),
            content=str((event.get("args") or {}).get("thought") or event.get("message") or ""),
            cost_usd=max(0.0, accumulated - spent), ts=iso_ts(event.get("timestamp"))))
        spent = max(spent, accumulated)
    recorded = (data.get("metrics") or {}).get("accumulated_cost") if isinstance(data.get("metrics"), dict) else None
    total = float(recorded) if isinstance(recorded, int | float) else spent
    notes = []
    if total > spent + 1e-9 and steps:  # the record's total covers calls the events do not show
        notes.append(f"${total - spent:.4f} of the recorded total is not on any event; it is not spread")
    report = data.get("test_result", {}).get("report", {}) if isinstance(data.get("test_result"), dict) else {}
    resolved = report.get("resolved") if isinstance(report, dict) and isinstance(report.get("resolved"), bool) else None
    return ImportedRun(source="openhands-events", path=str(path), instance_id=str(data.get("instance_id") or path.stem),
                       agent="OpenHands", model=model, task=(task or str(data.get("instruction") or ""))[:2000],
                       steps=steps, resolved=resolved, exit_status=None, total_cost_usd=sum(s.cost_usd for s in steps),
                       notes=notes)
