"""Run an eval: every task x config x repeat is a normal Tether run, submitted to the durable queue
(tagged with the eval id) and run by worker processes; each run's delivered work is scored with the
visible and hidden checks as soon as it ends.

An eval lives in its output directory (eval.json names its id and store). Running it again continues
it: submissions are idempotent by cell, workers keep their executor ids (so DBOS recovers what a
killed worker was doing), and cells already scored are not run again."""

from __future__ import annotations

import json
import math
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tether.evals.compare import compare_configs
from tether.evals.metrics import cell_row, summarize_config
from tether.evals.records import Cell, EvalRecords
from tether.evals.score import rework_lines, score_delivery
from tether.evals.suite import SuiteError, TaskSpec, prepare_repo
from tether.ledger import Ledger
from tether.ledger.queries import finished_of, held_reason, run_policy
from tether.policy import Policy, load_policy
from tether.policy.load import dump_policy
from tether.policy.schema import EnvironmentPolicy, SandboxPolicy
from tether.queue.tasks import Tasks

EVAL_FILE = "eval.json"
VISIBLE_CHECK = "{visible_check}"  # in a config's check command: the task's visible check
TASK_NAME = "{task}"  # in a config's model: the task's name (a scripted model with a script per task)
ENDED = ("succeeded", "failed", "stopped")


@dataclass(frozen=True)
class Config:
    name: str
    path: Path
    policy: Policy


@dataclass
class Eval:
    id: str
    out: Path
    db_url: str
    suite: Path | None = None
    tasks: list[TaskSpec] = field(default_factory=list)
    configs: list[Config] = field(default_factory=list)
    repeats: int = 1


def load_configs(paths: list[Path]) -> list[Config]:
    configs = [Config(path.stem, path.resolve(), load_policy(path)) for path in paths]
    names = [c.name for c in configs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SuiteError(f"two configs are named {', '.join(duplicates)} (a config is named by its file's stem)")
    return configs


def task_policy(config: Config, task: TaskSpec) -> Policy:
    """The config's policy for one task: its visible check and name filled in, its time limit applied.
    Nobody approves during an eval: a request is recorded (an interrupt) and denied, and the run goes on."""
    policy = config.policy
    checks = [c.model_copy(update={"command": c.command.replace(VISIBLE_CHECK, task.visible_check)})
              for c in policy.checks]
    wall = min(policy.budget.max_wall_s or math.inf, task.timeouts.agent_s)
    return policy.model_copy(update={
        "checks": checks, "budget": policy.budget.model_copy(update={"max_wall_s": wall}),
        "approvals": policy.approvals.model_copy(update={"unattended": "deny"}),
        "agent": policy.agent.model_copy(update={"model": policy.agent.model.replace(TASK_NAME, task.name)})})


def open_eval(out: Path, db_url: str | None = None) -> Eval:
    """The eval recorded in `out`, or a new one there (its store: `db_url`, else out/ledger.db)."""
    meta_path = out / EVAL_FILE
    if meta_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if db_url is not None and db_url != meta["db"]:
            raise SuiteError(f"{meta_path}: this eval's store is {meta['db']}, not {db_url}")
        return Eval(meta["id"], out, meta["db"])
    out.mkdir(parents=True, exist_ok=True)
    ev = Eval(f"e-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}", out,
              db_url or f"sqlite:///{(out / 'ledger.db').resolve()}")
    meta_path.write_text(json.dumps({"id": ev.id, "db": ev.db_url}, indent=2) + "\n", encoding="utf-8")
    return ev


@dataclass(frozen=True)
class Progress:
    total: int
    done: int
    row: dict[str, Any] | None  # the row of the cell just scored, None for the first report


def _cell_key(ev: Eval, cell: Cell) -> str:
    return f"eval:{ev.id}:{cell.task}:{cell.config}:{cell.repeat}"


def _submit(ev: Eval, ledger: Ledger, records: EvalRecords, tasks: Tasks) -> None:
    """Prepare each task's repository and each config's policy for it, and submit every cell.
    Configs alternate within a task, so an interrupted eval still has paired cells."""
    for task in ev.tasks:
        prepare_repo(task, ev.out / "repos" / task.name)
        for config in ev.configs:
            policy_path = ev.out / "policies" / config.name / f"{task.name}.toml"
            policy_path.parent.mkdir(parents=True, exist_ok=True)
            policy_path.write_text(dump_policy(task_policy(config, task)), encoding="utf-8")
    for repeat in range(1, ev.repeats + 1):
        for task in ev.tasks:
            for config in ev.configs:
                cell = Cell(task.name, config.name, repeat, "")
                task_id, _ = tasks.submit(task.text(), ev.out / "repos" / task.name, key=_cell_key(ev, cell),
                                          policy=ev.out / "policies" / config.name / f"{task.name}.toml",
                                          source="eval")
                records.add(Cell(task.name, config.name, repeat, task_id))


def _ended(ledger: Ledger, run_id: str) -> bool:
    if not ledger.has_run(run_id):
        return False
    run = ledger.get_run(run_id)
    if run.status not in ENDED:
        return False
    return run.status != "stopped" or held_reason(ledger.events(run_id)) is None


def _score(ev: Eval, ledger: Ledger, records: EvalRecords, cell: Cell, by_name: dict[str, TaskSpec]) -> dict[str, Any]:
    run = ledger.get_run(cell.run_id)
    events = ledger.events(run.id)
    finished = finished_of(events)
    repo = Path(run.repo)
    policy = run_policy(events)
    environment = policy.environment if policy is not None else EnvironmentPolicy()
    score = score_delivery(by_name[cell.task], repo, run.base_commit or "", finished.commit if finished else None,
                           SandboxPolicy(), environment)
    score["rework_lines"] = rework_lines(repo, run.id, run.base_commit or "", events)
    records.set_score(cell, score)
    return cell_row(cell.task, cell.config, cell.repeat, run, events, score)


def _refuse_unstartable(tasks: Tasks, ledger: Ledger, pending: list[Cell]) -> None:
    """A cell whose task ended without a run could not start (a model that cannot be built, say):
    that is the config's fault, not a result, so the eval stops and says why."""
    for cell in pending:
        if ledger.has_run(cell.run_id):
            continue
        task = tasks.get(cell.run_id)
        if task.state in ("failed", "cancelled"):
            raise SuiteError(f"{cell.task} under {cell.config} could not start: {task.reason}")


class Workers:
    """Worker processes with stable executor ids: one restarted with its id recovers its tasks."""

    def __init__(self, ev: Eval, count: int):
        self.ev, self.count = ev, count
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.logs: dict[int, IO[bytes]] = {}
        self.failures: dict[int, int] = {}
        (ev.out / "workers").mkdir(parents=True, exist_ok=True)

    def ensure(self) -> None:
        """Start the workers that are not running; refuse a worker that cannot start at all."""
        for number in range(1, self.count + 1):
            proc = self.procs.get(number)
            if proc is not None and proc.poll() is None:
                continue
            if proc is not None and proc.returncode not in (0, -signal.SIGTERM):
                self.failures[number] = self.failures.get(number, 0) + 1
                if self.failures[number] >= 3:
                    log = (self.ev.out / "workers" / f"w{number}.log").read_text(errors="replace")
                    raise SuiteError(f"worker {number} keeps failing (exit {proc.returncode}); the end of its log:\n"
                                     + "\n".join(log.splitlines()[-8:]))
            log = self.logs.get(number) or (self.ev.out / "workers" / f"w{number}.log").open("ab")
            self.logs[number] = log
            self.procs[number] = subprocess.Popen(
                [sys.executable, "-m", "tether", "worker", "--db", self.ev.db_url, "--id", f"{self.ev.id}-w{number}",
                 "--concurrency", "1", "--idle-exit", "10"], stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in self.logs.values():
            log.close()


def run_eval(ev: Eval, workers: int, on_progress: Callable[[Progress], None], poll_s: float = 0.3) -> dict[str, Any]:
    """Run (or continue) every cell of `ev`, scoring each as its run ends; returns the results."""
    ledger = Ledger(ev.db_url)
    records = EvalRecords(ledger, ev.id)
    records.create(str(ev.suite), {"suite": str(ev.suite), "configs": {c.name: str(c.path) for c in ev.configs},
                                   "tasks": [t.name for t in ev.tasks], "repeats": ev.repeats})
    tasks = Tasks(ledger)
    pool = Workers(ev, workers)
    try:
        _submit(ev, ledger, records, tasks)
        by_name = {task.name: task for task in ev.tasks}
        wanted = {(t.name, c.name, r) for t in ev.tasks for c in ev.configs for r in range(1, ev.repeats + 1)}
        pending = [c for c in records.cells() if c.key in wanted and c.score is None]
        done = len(wanted) - len(pending)
        on_progress(Progress(len(wanted), done, None))
        checked_at = time.monotonic()
        while pending:
            pool.ensure()
            if time.monotonic() - checked_at > 2:
                _refuse_unstartable(tasks, ledger, pending)
                checked_at = time.monotonic()
            for cell in [c for c in pending if _ended(ledger, c.run_id)]:
                row = _score(ev, ledger, records, cell, by_name)
                pending.remove(cell)
                done += 1
                on_progress(Progress(len(wanted), done, row))
            time.sleep(poll_s if pending else 0)
    finally:
        pool.stop()
        tasks.close()
    results = build_results(ledger, ev.id)
    ledger.close()
    return results


def build_results(ledger: Ledger, eval_id: str) -> dict[str, Any]:
    """Every scored cell's row and each config's summary, from the store alone."""
    records = EvalRecords(ledger, eval_id)
    spec = records.spec()
    if spec is None:
        raise SuiteError(f"no eval {eval_id} in {ledger.url}")
    rows = [cell_row(c.task, c.config, c.repeat, ledger.get_run(c.run_id), ledger.events(c.run_id), c.score)
            for c in records.cells() if c.score is not None]
    configs = list(dict.fromkeys([*spec["configs"], *(r["config"] for r in rows)]))
    summary = {name: summarize_config([r for r in rows if r["config"] == name]) for name in configs}
    comparisons = [compare_configs(rows, configs[0], other) for other in configs[1:]]
    return {"eval_id": eval_id, "suite": spec["suite"], "configs": spec["configs"], "repeats": spec["repeats"],
            "rows": rows, "summary": summary, "comparisons": comparisons}
