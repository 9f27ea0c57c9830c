"""Measurements: backtests, brake sweeps and evals as terminal tables."""

from __future__ import annotations

import html
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tether.backtest.engine import RunVerdict
from tether.backtest.engine import Summary as BacktestSummary
from tether.backtest.fit import FitResult
from tether.backtest.labels import LabelReport
from tether.backtest.sweep import SweepResult
from tether.evals.report import fmt_interval, fmt_value


def _rate(count: int, total: int, interval: tuple[float, float]) -> str:
    share = count / total if total else 0.0
    return f"{count}/{total} = {share:.1%} ({interval[0]:.1%}–{interval[1]:.1%})"


def print_backtest(console: Console, verdicts: list[RunVerdict], overall: BacktestSummary,
                   by_source: dict[str, BacktestSummary], show_all: bool) -> None:
    listed = [v for v in verdicts if v.stopped or show_all]
    table = Table("run", "resolved", "stopped at", "rule", "USD at stop / total", "steps at stop / total",
                  title=f"{len([v for v in verdicts if v.stopped])} of {len(verdicts)} runs would have stopped")
    for v in listed:
        table.add_row(f"{v.instance_id} [dim]({v.source})[/]", {True: "yes", False: "no", None: "?"}[v.resolved],
                      f"step {v.stop_step}" if v.stopped else "-", v.rule or "-",
                      f"{v.cost_at_stop or 0:.2f} / {v.cost_usd:.2f}" if v.stopped else f"- / {v.cost_usd:.2f}",
                      f"{v.steps_at_stop} / {v.steps}" if v.stopped else f"- / {v.steps}")
    console.print(table)
    totals = Table("", "failed runs stopped", "USD saved on failed runs", "resolved runs stopped (false stops)",
                   "USD spent on killed resolved runs", title="overall (95% intervals: Wilson; bootstrap for USD)")
    for name, s in [*by_source.items(), ("all", overall)]:
        totals.add_row(name, _rate(s.unresolved_stopped, s.unresolved, s.unresolved_stopped_ci),
                       f"${s.saved_usd:.2f} of ${s.unresolved_usd:.2f} = {s.saved_share:.1%} "
                       f"({s.saved_share_ci[0]:.1%}–{s.saved_share_ci[1]:.1%})",
                       _rate(s.false_stops, s.resolved, s.false_stop_ci),
                       f"${s.resolved_usd_spent_before_kill:.2f} (of ${s.resolved_usd_of_killed:.2f})")
    console.print(totals)
    if overall.unlabelled:
        console.print(f"[dim]{overall.unlabelled} runs without a label are left out of the rates[/]")
    if overall.stops_by_rule:
        console.print("stops by rule: " + ", ".join(f"{rule} {n}" for rule, n in overall.stops_by_rule.items()))


def print_cost_profile(console: Console, profile: dict[str, Any]) -> None:
    """Where the money goes: each tenth of the runs' steps with its share of the USD."""
    console.print("where the money goes (share of USD in each tenth of a run's steps; after its last edit):")
    for name, part in profile.items():
        shares = " ".join(f"{share:4.0%}" for share in part["share_by_tenth_of_steps"])
        console.print(f"  {name:<8} ${part['usd']:>8.2f}  {shares}  | {part['share_after_last_edit']:.0%}")


def print_labels(console: Console, report: LabelReport) -> None:
    """Which file labelled how many runs; loudly, the runs with none and where labels were looked for."""
    for source, count in report.sources.items():
        console.print(f"[dim]labels: {count} runs from {escape(source)}[/]")
    if report.loud:
        looked = "\n  ".join(escape(folder) for folder in report.looked_in[:12])
        more = f"\n  ... and {len(report.looked_in) - 12} more" if len(report.looked_in) > 12 else ""
        console.print(f"[bold red]{report.unlabelled} of {report.runs} runs have no outcome label and are left out "
                      f"of every rate.[/] Looked for index.csv, SWE-bench harness and sb-cli reports, "
                      f"logs/run_evaluation/*/report.json, results_summary.json and results.json in:\n  {looked}"
                      f"{more}\nGive the labels with --labels FILE (CSV instance_id,resolved, or JSON).")


def print_fit(console: Console, result: FitResult, target: float) -> None:
    console.print(f"stop score fitted on {result.fit_runs} labelled runs, reported on {result.test_runs}; "
                  f"threshold chosen for ≤{target:.0%} false stops on the fit runs")
    console.print(result.policy_toml())
    console.print("carried by (standardised weight): " + ", ".join(f"{name} {value:+.2f}"
                                                                   for name, value in result.carried_by))
    for side, m in (("fit", result.fit), ("test", result.test)):
        if m:
            console.print(f"{side}: saves {m['saved_share']:.1%} ({m['saved_share_ci'][0]:.1%}–"
                          f"{m['saved_share_ci'][1]:.1%}) of failed runs' USD, stopping "
                          f"{m['unresolved_stopped']}/{m['unresolved']} failed runs; false stops "
                          f"{_rate(m['false_stops'], m['resolved'], m['false_stop_ci'])}")


def print_sweep(console: Console, result: SweepResult) -> None:
    console.print(f"fitted on {result.fit_runs} labelled runs, reported on {result.test_runs} held-out runs; "
                  f"{result.configs} configurations")
    table = Table("policy", "false stops fit", "saved fit", "false stops test", "saved test",
                  title="Pareto frontier (fit), measured on the held-out runs")
    for p in result.frontier:
        style = "bold red" if p is result.chosen else ""
        table.add_row(p.policy_toml().replace("\n", "  "), f"{p.fit['false_stop_rate']:.1%}",
                      f"{p.fit['saved_share']:.1%}", f"{p.test['false_stop_rate']:.1%}",
                      f"{p.test['saved_share']:.1%}", style=style)
    console.print(table)
    if result.chosen is None:
        console.print(f"no frontier policy keeps false stops under {result.target_false_stop_rate:.0%} on the fit runs")
    else:
        t = result.chosen.test
        console.print(f"[bold]chosen at ≤{result.target_false_stop_rate:.0%} false stops (fit):[/]\n"
                      f"{result.chosen.policy_toml()}\non held-out runs: saves {t['saved_share']:.1%} of failed "
                      f"runs' USD ({t['saved_share_ci'][0]:.1%}–{t['saved_share_ci'][1]:.1%}), stops "
                      f"{t['false_stops']}/{t['resolved']} resolved runs ({t['false_stop_ci'][0]:.1%}–"
                      f"{t['false_stop_ci'][1]:.1%})")


def print_eval(console: Console, results: dict[str, Any]) -> None:
    """One column per config (configs are few, metrics many), then the paired comparisons."""
    summary = results["summary"]
    table = Table(title=f"eval {results['eval_id']}: {len(results['rows'])} scored runs")
    table.add_column("metric")
    for name in summary:
        table.add_column(name, justify="right")

    def pass_rate(s: dict[str, Any]) -> str:
        low, high = s["pass_rate_ci"]
        return f"{s['pass_rate']:.0%} [{low:.0%}, {high:.0%}]"

    metrics: list[tuple[str, Any]] = [
        ("solved (hidden)", lambda s: f"{s['solved']}/{s['runs']}"), ("pass rate [95% CI]", pass_rate),
        ("visible pass rate", lambda s: f"{s['visible_pass_rate']:.0%}"),
        ("latency p50 / p95 s",
         lambda s: f"{fmt_value(s['latency_p50_s'], '.1f')} / {fmt_value(s['latency_p95_s'], '.1f')}"),
        ("tokens per task", lambda s: fmt_value(s["tokens_per_task"], ",.0f")),
        ("tokens per solved task", lambda s: fmt_value(s["tokens_per_solved"], ",.0f")),
        ("USD per task", lambda s: fmt_value(s["usd_per_task"], ".4f")),
        ("human interrupts", lambda s: str(s["interrupts"])),
        ("brake / budget stops", lambda s: f"{s['brake_stops']} / {s['budget_stops']}"),
        ("rework: check failures / lines", lambda s: f"{s['rework']} / {s['rework_lines']}"),
        ("escaped defects", lambda s: str(s["escaped_defects"])),
        ("false successes (of runs ended succeeded)", lambda s: f"{s['false_successes']} of {s['succeeded']}"),
        ("write-cap hits", lambda s: str(s["cap_hits"])),
    ]
    for label, cell in metrics:
        table.add_row(label, *(cell(s) for s in summary.values()))
    console.print(table)
    for c in results["comparisons"]:
        console.print(f"[bold]{escape(c['second'])} vs {escape(c['first'])}[/] on {c['pairs']} pairs: pass rate "
                      f"{fmt_interval(c['pass_rate_diff'], '+.0%')} (solved only by {escape(c['first'])}: "
                      f"{c['only_first_passed']}, only by {escape(c['second'])}: {c['only_second_passed']}, McNemar "
                      f"p={c['mcnemar_p']:.3f}); tokens {fmt_interval(c['tokens_diff'], '+,.0f')}; latency "
                      f"{fmt_interval(c['latency_diff_s'], '+.1f')} s; escaped defects "
                      f"{fmt_interval(c['escaped_defects_diff'], '+.0%')}; false successes "
                      f"{fmt_interval(c['false_successes_diff'], '+.0%')}; "
                      f"rework {fmt_interval(c['rework_diff'], '+.2f')}")


def print_gap(console: Console, gap: Any) -> None:
    """One line of `tether audit`: the finding, and the fix under a gap."""
    mark = "[green]ok[/]  " if gap.ok else "[red]GAP[/] "
    console.print(f"{mark} {gap.what}: {escape(gap.detail)}", soft_wrap=True)
    for line in (gap.fix.splitlines() if not gap.ok else []):
        console.print(f"       [dim]fix: {escape(line)}[/]", soft_wrap=True)


def audit_html(result: Any) -> str:
    """The audit as one self-contained page."""
    rows = "".join(
        f"<tr class='{'ok' if g.ok else 'gap'}'><td>{'ok' if g.ok else 'gap'}</td><td>{html.escape(g.what)}</td>"
        f"<td>{html.escape(g.detail)}</td><td><pre>{html.escape(g.fix)}</pre></td></tr>" for g in result.findings)
    timings = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in result.seconds.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Readiness: {html.escape(result.repo)}</title>
<style>body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1000px; }}
table {{ border-collapse: collapse; width: 100%; }} td {{ border-bottom: 1px solid #ddd; padding: 4px 8px;
vertical-align: top; }} tr.gap td:first-child {{ color: #c00; font-weight: bold; }} pre {{ margin: 0; }}</style>
</head><body><h1>Readiness for agents: {result.score}/100</h1>
<p>{html.escape(result.repo)} at <code>{result.commit[:10]}</code>; {html.escape(timings)}</p>
<table><tr><th></th><th>check</th><th>finding</th><th>fix</th></tr>{rows}</table></body></html>
"""
