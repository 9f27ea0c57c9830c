"""An entry's effect: the repository's runs since it was kept, those given it against those not
(each run records the entries it was given), by success rate with its Wilson interval, steps and
tokens. Observational, not an experiment: runs given an entry may differ in their tasks too; the
paired comparison is `benchmarks/bench_memory.py`."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import mean

from tether.ledger import Ledger
from tether.ledger import events as ev
from tether.memory.store import Entry
from tether.stats import wilson


@dataclass(frozen=True)
class Group:
    runs: int
    succeeded: int
    mean_steps: float | None
    mean_tokens: float | None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson(self.succeeded, self.runs) if self.runs else None

    def as_dict(self) -> dict[str, object]:
        return {"runs": self.runs, "succeeded": self.succeeded, "success_interval": self.interval,
                "mean_steps": self.mean_steps, "mean_tokens": self.mean_tokens}


@dataclass(frozen=True)
class Effect:
    given: Group
    not_given: Group

    def as_dict(self) -> dict[str, object]:
        return {"given": self.given.as_dict(), "not_given": self.not_given.as_dict()}


def _group(summaries: list[dict]) -> Group:
    finished = [s for s in summaries if s.get("status") not in ("running", "awaiting_approval", "waiting")]
    steps = [s["usage"]["steps"] for s in finished if s.get("usage")]
    tokens = [s["usage"]["tokens"] for s in finished if s.get("usage")]
    return Group(len(finished), sum(s.get("status") == "succeeded" for s in finished),
                 round(mean(steps), 1) if steps else None, round(mean(tokens)) if tokens else None)


def effect(ledger: Ledger, entry: Entry) -> Effect:
    """Live runs of the entry's repository started after it was kept, split by whether they were given it."""
    runs = [run for run in ledger.list_runs(limit=None, repo=entry.repo, since=entry.created_at)
            if run.source == "live" and run.summary is not None]
    started = ledger.events_of([run.id for run in runs], [ev.EventType.RUN_STARTED])
    given, not_given = [], []
    for run in runs:
        first = started.get(run.id, [])
        data = first[0].data if first else None
        ids = {item["id"] for item in (data.memory or [])} if isinstance(data, ev.RunStarted) else set()
        (given if entry.id in ids else not_given).append(run.summary)
    return Effect(_group(given), _group(not_given))
