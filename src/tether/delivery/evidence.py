"""A run's evidence as a pull request's title and description, read from its event log: the task,
model and architecture, the checks (with the tail of a failure), the budget used, denials,
approvals (who, why), brakes, the diffstat, and the commands to verify and replay it."""

from __future__ import annotations

from typing import Any

from tether.ledger import StoredEvent
from tether.ledger import events as ev
from tether.redact import mask

FENCE = "````"  # longer than any ``` a check's output may hold


def title(instruction: str) -> str:
    first = next((line.strip() for line in instruction.splitlines() if line.strip()), "run")
    return f"tether: {first[:90]}"


def _quote(text: str, limit: int = 1500) -> str:
    clipped = text if len(text) <= limit else text[:limit] + " [...]"
    return "\n".join(f"> {line}" for line in clipped.splitlines()) or "> (empty)"


def description(summary: dict[str, Any], events: list[StoredEvent]) -> str:
    started = events[0].data
    assert isinstance(started, ev.RunStarted)
    run_id, usage, diff = summary["run_id"], summary["usage"], summary["diffstat"]
    ended = f"Tether run `{run_id}` ended **{summary['status']}**"
    lines = [
        ended + (f": {summary['reason']}" if summary["reason"] else ""),
        "", "**Task**", "", _quote(started.task), "",
        "| | |", "|---|---|",
        f"| model | `{started.model}` |",
        f"| architecture | {started.architecture}" + (f", {summary['attempts']} attempts" if summary["attempts"] > 1
                                                       else "") + " |",
        f"| requested by | {started.requested_by or started.user or 'unknown'} |",
        f"| tier | {started.tier or 'none (the org has no tiers)'} |",
        f"| budget used | {usage['steps']} steps, {usage['tokens']:,} tokens, ${usage['usd']:.4f}, "
        f"{usage['wall_s']:.0f} s |",
        f"| diff | {diff['files']} files, +{diff['added']} -{diff['removed']} |",
        "", "**Checks**", "",
    ]
    for check in summary["checks"]:
        verdict = "passed" if check["passed"] else f"failed (exit {check['exit_code']})"
        lines.append(f"- {check['name']}{'' if check['required'] else ' (optional)'}: {verdict}")
        if not check["passed"] and check["output_tail"]:
            lines += ["", FENCE, check["output_tail"][-1500:].rstrip(), FENCE]
    if not summary["checks"]:
        lines.append("- none configured")
    lines += _section("Denials", [f"step {d['step']}: {d['verdict']} `{d['rule']}`: {d['reason']}"
                                  for d in summary["denials"]])
    lines += _section("Approvals", [f"{', '.join(a.get('paths', []))}: {a.get('decision', 'pending')} by "
                                    f"{a.get('by', '-')}" + (f" ({a['reason']})" if a.get("reason") else "")
                                    for a in summary["approvals"]])
    lines += _section("Brakes", [f"step {b['step']}: {b['detector']}: {b['reason']}" for b in summary["brakes"]])
    lines += ["", "**Verify and replay**", "", "```", f"tether verify {run_id}", f"tether show {run_id} --events",
              f"tether replay {run_id}", "```"]
    return mask("\n".join(lines))


def _section(name: str, items: list[str]) -> list[str]:
    return ["", f"**{name}**", "", *(f"- {item}" for item in items)] if items else []
