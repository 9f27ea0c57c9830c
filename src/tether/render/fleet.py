"""The queue's tasks and the fleet's limits, usage and switches."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from tether.ledger.fleet import DayUsage, Switch
from tether.policy.schema import FleetPolicy
from tether.queue.tasks import Task
from tether.render.text import STATUS_STYLE, short, table_of


def print_tasks(console: Console, tasks: list[Task]) -> None:
    if not tasks:
        console.print("no tasks")
        return
    rows = [[task.id, Text(task.state, STATUS_STYLE.get(task.state, "")), str(task.attempts), str(task.priority),
             short(task.repo, 30), short(task.instruction, 40), short(task.reason, 50)] for task in tasks]
    console.print(table_of(["task", "state", "attempts", "priority", "repository", "instruction", "reason"], rows,
                           ("task", "state", "attempts", "priority"), box=None, header_style="bold"))


def print_fleet(console: Console, limits: FleetPolicy, usage: list[DayUsage], switches: list[Switch]) -> None:
    org = next((u.usd for u in usage if u.scope == "org"), 0.0)
    usd_limit = f" of ${limits.max_usd_per_day:.2f}" if limits.max_usd_per_day else " (no limit)"
    console.print(f"today: ${org:.4f}{usd_limit} spent by the fleet")
    lines_limit = limits.max_lines_per_day_per_repo
    for row in usage:
        if row.scope.startswith("repo:"):
            of = f" of {lines_limit}" if lines_limit else ""
            console.print(f"  {row.scope[5:]}: {row.lines} changed lines{of}")
    if limits.max_concurrent_per_repo:
        console.print(f"at most {limits.max_concurrent_per_repo} concurrent run(s) per repository")
    console.print(f"over a limit, a run will {limits.on_limit}")
    for switch in switches:
        console.print(f"[bold red]brake on {switch.scope}[/] by {switch.by}: {escape(switch.reason)}")
    if not switches:
        console.print("no brakes on")
