"""An imported run: another agent's trajectory as Tether's own event types (the ones live runs
write), with its outcome label, so the same meters and brakes run over it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tether.ledger import events as ev

# Commands that change files. Imported runs carry no worktree snapshots, so a step "changes the
# tree" when its command looks like an edit; the tree id is then a hash chain of such commands.
_EDIT = re.compile(
    r"\bsed\s+(-\w*\s+)*-i|\bperl\s+-\w*i|(?<![0-9&>])>>?\s*(?!&|/dev/null)[\w./~-]+|\btee\b|\bpatch\b"
    r"|\bgit\s+(apply|checkout|restore|stash|reset)\b|\b(mv|cp|rm|touch|mkdir)\s"
    r"|open\([^)]*['\"][wa]\+?['\"]|write_text\(|\.write\(|^\s*(edit|create|insert|str_replace)\b"
    r"|\bstr_replace_editor\s+(create|str_replace|insert)|\bapply_patch\b",
    re.MULTILINE,
)


def looks_like_edit(command: str) -> bool:
    return bool(_EDIT.search(command))


def iso_ts(value: Any) -> float | None:
    """Seconds since the epoch of an ISO-8601 time (a trailing Z is UTC), or None."""
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


@dataclass
class ImportedStep:
    command: str
    output: str
    exit_code: int | None  # None when the format does not record it
    content: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    ts: float | None = None


@dataclass
class ImportedRun:
    source: str  # the format: mini-swe-agent-1, swe-agent-traj
    path: str
    instance_id: str
    agent: str
    model: str
    task: str
    steps: list[ImportedStep]
    resolved: bool | None
    exit_status: str | None
    total_cost_usd: float
    notes: list[str] = field(default_factory=list)  # what was estimated, and how
    label_source: str | None = None  # the file the label was read from
    collection: str = ""  # the folder (or file) it was found under, as given: one agent's set of runs

    @property
    def run_id(self) -> str:
        return f"imp-{digest(self.source + ':' + self.path)[:16]}"

    def events(self) -> list[tuple[ev.Payload, float]]:
        """(payload, ts) in the order a live run would have written them."""
        start = next((s.ts for s in self.steps if s.ts is not None), 0.0)
        out: list[tuple[ev.Payload, float]] = [(ev.RunStarted(
            schema_version=ev.SCHEMA_VERSION, task=self.task, imported=True, source=self.source, path=self.path,
            instance_id=self.instance_id, agent=self.agent, model=self.model, base_tree="imported-0",
            notes=self.notes,
        ), start)]
        tree = "imported-0"
        last_ts = start
        for index, step in enumerate(self.steps, start=1):
            ts = step.ts if step.ts is not None else last_ts
            last_ts = ts
            call_id = f"step{index}"
            arguments = {"command": step.command}
            out.append((ev.ModelResponse(
                step=index, model=self.model, content=step.content,
                tool_calls=[ev.RecordedCall(id=call_id, name="bash", arguments=arguments)] if step.command
                else [],  # no single action: a format error
                usage=ev.RecordedUsage(input_tokens=step.input_tokens, output_tokens=step.output_tokens),
                cost_usd=step.cost_usd, price_known=True, latency_s=0.0,
            ), ts))
            if not step.command:
                continue
            out.append((ev.ToolCall(step=index, call_id=call_id, name="bash", arguments=arguments), ts))
            if looks_like_edit(step.command):
                tree = digest(tree + step.command)[:40]
            out.append((ev.ToolResult(
                step=index, call_id=call_id, executed=True,
                ok=None if step.exit_code is None else step.exit_code == 0, exit_code=step.exit_code,
                output_digest=digest(step.output), duration_s=0.0, tree=tree, observation=step.output,
            ), ts))
        out.append((ev.RunFinished(
            status={True: ev.RunStatus.SUCCEEDED, False: ev.RunStatus.FAILED}.get(
                self.resolved, ev.RunStatus.UNLABELLED),
            reason=f"imported; exit status {self.exit_status}", resolved=self.resolved,
            total_cost_usd=self.total_cost_usd,
        ), last_ts))
        return out
