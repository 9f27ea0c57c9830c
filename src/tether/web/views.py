"""What the pages show, read through the same library functions the CLI uses: a run's timeline
(every event, the guard's decisions marked), a step's diff, the inbox of one person, the fleet."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.approvals import PendingApproval, list_pending
from tether.ledger import Ledger, StoredEvent
from tether.ledger import events as ev
from tether.ledger.fleet import Fleet, today
from tether.ledger.queries import pending_approval, run_policy, started_of
from tether.models.tools import summarize_call
from tether.people import Actor
from tether.policy.approvers import refusal
from tether.policy.load import org_limits
from tether.workspace.git import GitError, git

PAYLOAD_CHARS = 4_000  # of one event's payload shown in the timeline; the rest is cut, never the page
DIFF_CHARS = 200_000


@dataclass(frozen=True)
class Row:
    """One event on a run's timeline."""

    seq: int
    at: str
    type: str
    kind: str  # "" or a highlight: deny, ask, stop, brake, shadow, approval, check-failed, check-passed, end
    title: str
    detail: str  # the payload, cut to PAYLOAD_CHARS
    step: int | None = None
    tree: str | None = None  # a tool result's tree: its diff can be shown


def clip(text: str, limit: int = PAYLOAD_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}\n[... {len(text) - limit:,} more characters]"


def _kind_and_title(data: ev.Payload) -> tuple[str, str]:
    if isinstance(data, ev.PolicyDecision):
        kind = "stop" if data.verdict == "stop" else data.verdict if data.verdict in ("deny", "ask") else ""
        return kind, f"{data.verdict} {data.rule}: {data.reason}"
    if isinstance(data, ev.Brake):
        return "brake", f"brake {data.detector}: {data.reason}"
    if isinstance(data, ev.BrakeShadowed):
        return "shadow", f"would have braked ({data.detector}): {data.reason}"
    if isinstance(data, ev.ApprovalRequested):
        return "ask", f"approval asked of {', '.join(data.owners)}: {data.action}"
    if isinstance(data, ev.ApprovalDecided):
        return "approval", f"{'approved' if data.approved else 'denied'} by {data.by}" + (
            f": {data.reason}" if data.reason else "")
    if isinstance(data, ev.CheckFinished):
        return ("check-passed" if data.passed else "check-failed"), \
            f"check {data.name} {'passed' if data.passed else 'failed'} (exit {data.exit_code})"
    if isinstance(data, ev.ToolCall):
        return "", f"{data.name}: {summarize_call(data.name, data.arguments)[:200]}"
    if isinstance(data, ev.ToolResult):
        what = "not run" if not data.executed else f"exit {data.exit_code}" if data.exit_code is not None else "done"
        return "", f"result ({what}){', changed ' + ', '.join(data.changed[:5]) if data.changed else ''}"
    if isinstance(data, ev.ModelResponse):
        return "", f"model replied ({data.usage.input_tokens}+{data.usage.output_tokens} tokens)"
    if isinstance(data, ev.MetricMeasured):
        where = "the base" if data.iteration == 0 else f"proposal {data.iteration}"
        return "", f"metric of {where}: {data.median:g} ({', '.join(f'{v:g}' for v in data.values)})"
    if isinstance(data, ev.ResearchIteration):
        return ("check-passed" if data.kept else "check-failed"), \
            f"proposal {data.iteration} {'kept' if data.kept else 'reverted'}: {data.reason}"
    if isinstance(data, ev.CandidateScored):
        return ("check-passed" if data.passed else "check-failed"), \
            f"candidate {data.candidate} {'passed' if data.passed else 'failed'} the visible evals: {data.reason}"
    if isinstance(data, ev.JudgeInputs):
        return "", f"judge inputs ({len(data.inputs)}): {'; '.join(data.inputs)[:300]}"
    if isinstance(data, ev.CandidateBehaviour):
        return "", f"behaviour of candidate(s) {', '.join(map(str, data.candidates))}: {'; '.join(data.outputs)[:300]}"
    if isinstance(data, ev.JudgeDecided):
        picked = "nothing" if data.chosen is None else f"candidate {data.chosen}"
        return ("end" if data.chosen is not None else "stop"), f"judge picked {picked} by {data.method}: {data.reason}"
    if isinstance(data, ev.RunFinished):
        return "end", f"{data.status}: {data.reason}"
    if isinstance(data, ev.RunPaused):
        return "ask" if data.status == ev.RunStatus.AWAITING_APPROVAL else "stop", f"paused: {data.reason}"
    if isinstance(data, ev.RunStarted):
        return "", f"started: {data.task.splitlines()[0][:200] if data.task else ''}"
    return "", data.type.value.replace("_", " ")


def timeline_row(event: StoredEvent) -> Row:
    data = event.data
    kind, title = _kind_and_title(data)
    detail = clip(json.dumps(event.payload, indent=1, sort_keys=True, default=str))
    step = getattr(data, "step", None)
    tree = data.tree if isinstance(data, ev.ToolResult) and data.executed else None
    return Row(event.seq, time.strftime("%H:%M:%S", time.gmtime(event.ts)), event.type, kind, title[:500], detail,
               step if isinstance(step, int) else None, tree)


def timeline(events: list[StoredEvent]) -> list[Row]:
    return [timeline_row(event) for event in events]


def step_diff(events: list[StoredEvent], seq: int) -> str:
    """The diff one tool result's step made (its tree against the tree before it), from the
    repository the run worked in; a clear line when it cannot be shown."""
    started = started_of(events)
    if started is None or not started.repo:
        return "(an imported run: no repository to diff in)"
    previous = started.base_tree
    for event in events:
        data = event.data
        if isinstance(data, ev.ToolResult) and data.tree:
            if event.seq == seq:
                if data.tree == previous:
                    return "(this step changed nothing)"
                try:
                    return clip(git(Path(started.repo), "diff", "--no-color", "--no-ext-diff", previous or "",
                                    data.tree, "--"), DIFF_CHARS)
                except (GitError, OSError) as exc:
                    return f"(cannot show the diff here: {exc})"
            previous = data.tree
    return "(no such step)"


def may_answer(actor: Actor, pending: PendingApproval, ledger: Ledger) -> bool:
    """Whether the inbox lists this request for `actor`: an owner, a member of an owning team, or an
    admin, who may approve (the same rule `decide_approval` applies)."""
    if not actor.may_decide:
        return False
    events = ledger.events(pending.run_id)
    policy = run_policy(events)
    if policy is None:
        return False
    return refusal(actor.name, True, pending.request["owners"], policy.approvals, None) is None \
        or actor.role == "admin"


def inbox(ledger: Ledger, actor: Actor) -> list[PendingApproval]:
    return [pending for pending in list_pending(ledger) if may_answer(actor, pending, ledger)]


def waiting_request(events: list[StoredEvent]) -> dict[str, Any] | None:
    return pending_approval(events)


@dataclass(frozen=True)
class FleetView:
    day: str
    usd_today: float
    usd_limit: float | None
    lines: list[tuple[str, int]]
    lines_limit: int | None
    concurrent: list[tuple[str, int]]
    concurrent_limit: int | None
    switches: list[Any]


def fleet_view(ledger: Ledger) -> FleetView:
    fleet = Fleet(ledger)
    limits = org_limits(fleet.org_policy())
    usage = fleet.usage(today())
    usd = sum(u.usd for u in usage if u.scope == "org")
    lines = [(u.scope.removeprefix("repo:"), u.lines) for u in usage if u.scope.startswith("repo:")]
    running = ledger.count_by_repo("running")
    return FleetView(today(), usd, limits.max_usd_per_day, lines, limits.max_lines_per_day_per_repo, running,
                     limits.max_concurrent_per_repo, fleet.switches())
