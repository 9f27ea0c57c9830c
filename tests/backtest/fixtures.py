"""Small trajectories in each supported format, built from the formats' descriptions."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any


def mini_v1(steps: list[tuple[str, int, str, float | None]], total: float | None = None,
            instance: str = "demo__repo-1") -> dict[str, Any]:
    """steps: (command, returncode, output, cost or None when unrecorded)."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "sys"},
                                      {"role": "user", "content": "<pr_description>fix it</pr_description>"}]
    for i, (command, code, output, cost) in enumerate(steps):
        usage: dict[str, Any] = {"prompt_tokens": 1000 + 100 * i, "completion_tokens": 50}
        if cost is not None:
            usage["cost"] = cost
        messages.append({"role": "assistant", "content": f"THOUGHT: go\n\n```bash\n{command}\n```",
                         "extra": {"response": {"created": 1_700_000_000 + 10 * i, "usage": usage}}})
        messages.append({"role": "user", "content": f"<returncode>{code}</returncode>\n<output>\n{output}</output>"})
    recorded = sum(c or 0 for *_, c in steps) if total is None else total
    return {"instance_id": instance, "trajectory_format": "mini-swe-agent-1",
            "info": {"exit_status": "Submitted", "submission": "diff",
                     "model_stats": {"instance_cost": recorded, "api_calls": len(steps)}, "mini_version": "1.15.0",
                     "config": {"model": {"model_name": "test/model"}}},
            "messages": messages}


def mini_v2(turns: list[list[tuple[str, int, str]]], costs: list[float], instance: str = "demo__repo-2") -> dict:
    """turns: the tool calls of each assistant turn as (command, returncode, output)."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "sys"}, {"role": "user", "content": "task"}]
    for t, (calls, cost) in enumerate(zip(turns, costs, strict=True)):
        ids = [f"call_{t}_{i}" for i in range(len(calls))]
        messages.append({
            "role": "assistant", "content": "thinking",
            "tool_calls": [{"id": cid, "type": "function",
                            "function": {"name": "bash", "arguments": json.dumps({"command": command})}}
                           for cid, (command, _, _) in zip(ids, calls, strict=True)],
            "extra": {"actions": [{"command": c} for c, _, _ in calls], "cost": cost,
                      "timestamp": 1_700_000_000.0 + t, "response": {"usage": {"prompt_tokens": 500 + t,
                                                                                 "completion_tokens": 20}}},
        })
        for cid, (_, code, output) in zip(ids, calls, strict=True):
            messages.append({"role": "tool", "tool_call_id": cid, "content": output,
                             "extra": {"returncode": code, "raw_output": output,
                                       "timestamp": 1_700_000_000.5 + t}})
    messages.append({"role": "exit", "content": "diff --git a/x b/x", "extra": {"exit_status": "Submitted"}})
    return {"instance_id": instance, "trajectory_format": "mini-swe-agent-1",
            "info": {"model_stats": {"instance_cost": sum(costs), "api_calls": len(turns)}, "mini_version": "2.0.0"},
            "messages": messages}


def swe_agent(actions: list[tuple[str, str]], total: float) -> dict[str, Any]:
    history: list[dict[str, Any]] = [{"role": "system", "content": "s" * 100}, {"role": "user", "content": "issue"}]
    trajectory = []
    for action, observation in actions:
        history.append({"role": "assistant", "content": f"DISCUSSION\nok\n```\n{action}\n```"})
        history.append({"role": "user", "content": observation})
        trajectory.append({"response": "DISCUSSION", "thought": "ok", "action": action + "\n",
                           "observation": observation, "state": "{}"})
    return {"environment": "swe_main", "trajectory": trajectory, "history": history,
            "info": {"exit_status": "submitted", "model_stats": {"instance_cost": total, "tokens_sent": 9000,
                                                                 "tokens_received": 300, "api_calls": len(actions)}}}


def write(path: Path, data: dict[str, Any], gz: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wt") as handle:
            json.dump(data, handle)
    else:
        path.write_text(json.dumps(data))
    return path
