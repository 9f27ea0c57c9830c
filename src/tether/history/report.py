"""`tether report`: for every delivered change, what the repository's history made of it, joined
with what it cost: merged or not and how fast, how much of it survives, reverts and rework by
others after merging; by configuration, with weekly trends and 95% intervals. Changes made by
agents outside Tether can be counted too, by a commit trailer pattern, and are labelled so."""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.history.outcomes import Change, History, Outcome
from tether.ledger import Ledger
from tether.ledger import events as ev
from tether.ledger.queries import finished_of
from tether.stats import bootstrap_share, wilson
from tether.workspace.git import GitError, git


@dataclass
class Row:
    outcome: Outcome
    group: str  # "tether <configuration>" or "attributed <pattern>"
    made_at: float
    usd: float = 0.0
    tokens: int = 0
    wall_s: float = 0.0
    interrupts: int = 0
    rework: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {**self.outcome.as_dict(), "group": self.group, "made_at": self.made_at, "usd": self.usd,
                "tokens": self.tokens, "wall_s": self.wall_s, "interrupts": self.interrupts, "rework": self.rework}


@dataclass
class Report:
    repo: str
    branch: str
    days: float
    rows: list[Row] = field(default_factory=list)

    def groups(self) -> dict[str, dict[str, Any]]:
        grouped: dict[str, list[Row]] = {}
        for row in self.rows:
            grouped.setdefault(row.group, []).append(row)
        return {name: summarize(rows) for name, rows in sorted(grouped.items())}

    def weeks(self) -> dict[str, dict[str, Any]]:
        grouped: dict[str, list[Row]] = {}
        for row in self.rows:
            grouped.setdefault(time.strftime("%G-W%V", time.gmtime(row.made_at)), []).append(row)
        return {week: summarize(rows) for week, rows in sorted(grouped.items())}

    def as_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "branch": self.branch, "days": self.days, "groups": self.groups(),
                "weeks": self.weeks(), "changes": [row.as_dict() for row in self.rows]}


def summarize(rows: list[Row]) -> dict[str, Any]:
    merged = [row for row in rows if row.outcome.merged]
    survival = [(row.outcome.surviving, row.outcome.added) for row in merged if row.outcome.added]
    hours = [row.outcome.hours_to_merge for row in merged if row.outcome.hours_to_merge is not None]
    reverted = sum(row.outcome.reverted_by is not None for row in merged)
    reworked = sum(bool(row.outcome.follow_ups) for row in merged)
    added = sum(row.outcome.added for row in merged)
    return {
        "changes": len(rows), "merged": len(merged), "merged_share": len(merged) / len(rows) if rows else 0.0,
        "merged_ci": wilson(len(merged), len(rows)),
        "hours_to_merge_p50": statistics.median(hours) if hours else None,
        "lines_added": added, "lines_surviving": sum(row.outcome.surviving for row in merged),
        "survival": sum(s for s, _ in survival) / added if added else None,
        "survival_ci": bootstrap_share(survival) if survival else (0.0, 0.0),
        "reverted": reverted, "reverted_ci": wilson(reverted, len(merged)),
        "reworked": reworked, "reworked_ci": wilson(reworked, len(merged)),
        "lines_rewritten_by_others": sum(row.outcome.rewritten_by_others for row in merged),
        "usd": sum(row.usd for row in rows), "usd_per_merged": sum(row.usd for row in rows) / len(merged)
        if merged else None, "tokens_per_merged": sum(row.tokens for row in rows) / len(merged) if merged else None,
        "interrupts_per_change": sum(row.interrupts for row in rows) / len(rows) if rows else 0.0,
        "rework_per_change": sum(row.rework for row in rows) / len(rows) if rows else 0.0,
    }


def default_branch(repo: Path) -> str:
    for candidate in ("refs/remotes/origin/HEAD", "main", "master"):
        try:
            git(repo, "rev-parse", "--verify", "--quiet", candidate)
            return candidate.removeprefix("refs/remotes/")
        except GitError:
            continue
    return "HEAD"


def tether_changes(ledger: Ledger, repo: Path, since: float | None) -> list[tuple[Change, dict[str, Any]]]:
    """The store's runs of this repository that ended with a change, with what each cost."""
    found = []
    for run in ledger.list_runs(limit=None, repo=str(repo), since=since):
        events = ledger.events(run.id)
        finished = finished_of(events)
        started = events[0].data if events else None
        if not isinstance(started, ev.RunStarted) or finished is None or not finished.commit \
                or not started.base_commit or finished.tree == started.base_tree:
            continue
        summary = run.summary or {}
        usage = summary.get("usage") or {}
        group = f"tether {started.configuration or started.architecture or 'harness'}" + \
            (f" (tier {started.tier})" if started.tier else "")
        found.append((Change(finished.commit, started.base_commit, events[-1].ts, run.instruction[:80], run.id,
                             "tether@localhost"),
                      {"group": group, "usd": float(usage.get("usd") or 0), "tokens": int(usage.get("tokens") or 0),
                       "wall_s": float(usage.get("wall_s") or 0), "interrupts": int(summary.get("interrupts") or 0),
                       "rework": int(summary.get("rework") or 0)}))
    return found


def attributed_changes(history: History, pattern: str, since: float | None) -> list[tuple[Change, dict[str, Any]]]:
    """Commits of the default branch whose message matches `pattern` (an agent's co-author trailer)."""
    wanted = re.compile(pattern, re.IGNORECASE)
    found = []
    for sha, (ts, email, message) in history.all_commits.items():
        if (since is None or ts >= since) and wanted.search(message):
            subject = message.splitlines()[0] if message else sha
            parents = git(history.repo, "rev-list", "--parents", "-n", "1", sha).split()[1:]
            if len(parents) == 1:
                found.append((Change(sha, parents[0], ts, subject[:80], None, email),
                              {"group": "attributed (outside Tether)"}))
    return sorted(found, key=lambda item: item[0].made_at)


def build(ledger: Ledger | None, repo: Path, since: float | None, days: float, attribute: str | None = None,
          branch: str | None = None, now: float | None = None) -> Report:
    branch = branch or default_branch(repo)
    history = History(repo, branch)
    report = Report(str(repo), branch, days)
    changes = tether_changes(ledger, repo, since) if ledger is not None else []
    if attribute:
        changes += attributed_changes(history, attribute, since)
    for change, extra in changes:
        outcome = history.follow(change, days, now)
        report.rows.append(Row(outcome, extra.pop("group"), change.made_at, **extra))
    return report
