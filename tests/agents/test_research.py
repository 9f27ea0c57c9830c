"""`architecture = "research"`: the metric measured on the base for its noise, proposals from the best
tree so far, a change kept (a commit on the run's branch) only when its checks pass and it beats the
best by more than the noise, else reverted; bad metrics stop the run with their reason; replay
follows the recorded measurements; the same guard holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import bash, call, git, payloads, run_scripted
from tether.ledger import Ledger
from tether.policy import PolicyError, parse_policy
from tether.replay import replay_run

WORK = "COST = {cost}\n\n\ndef total(items):\n    return sum(items)\n"
TEST = "from work import total\n\n\ndef test_total():\n    assert total([1, 2, 3]) == 6\n"
METRIC = "python -c 'import work; print(\"cost:\", work.COST)'"


def policy(metric: str = METRIC, extra: str = "", iterations: int = 3, repeats: int = 3, direction: str = "lower",
           timeout_s: float = 60) -> str:
    quoted = metric.replace("\\", "\\\\").replace('"', '\\"')
    return (f'[agent]\narchitecture = "research"\ncheck_after_write = true\n[budget]\nmax_steps = 2\n'
            f'[research]\nmetric = "{quoted}"\niterations = {iterations}\nrepeats = {repeats}\n'
            f'direction = "{direction}"\ntimeout_s = {timeout_s}\n'
            f'[[checks]]\nname = "tests"\ncommand = "python -m pytest -q -p no:cacheprovider test_work.py"\n{extra}')


def finished_rule(ledger: Ledger, summary: dict) -> str:
    return payloads(ledger, summary["run_id"], "run_finished")[0]["rule"]


@pytest.fixture
def work_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "work"
    repo.mkdir()
    (repo / "work.py").write_text(WORK.format(cost=100))
    (repo / "test_work.py").write_text(TEST)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=r@e", "-c", "user.name=R", "commit", "-qm", "work")
    return repo


def write(cost: int | str, iteration: int, broken: bool = False) -> dict:
    content = WORK.format(cost=cost) + ("\n\ndef total(items):\n    return 0\n" if broken else "")
    return {**call("write_file", path="work.py", content=content), "attempt": iteration}


def test_a_better_change_is_kept_a_worse_one_and_a_broken_one_are_reverted(ledger: Ledger, work_repo: Path,
                                                                           tmp_path: Path):
    turns = [write(60, 1), write(80, 2), write(10, 3, broken=True), {**bash("ls"), "attempt": 3}]
    summary = run_scripted(ledger, work_repo, tmp_path, turns, policy())
    assert summary["status"] == "succeeded", summary
    run_id = summary["run_id"]
    measured = payloads(ledger, run_id, "metric_measured")
    assert [(m["iteration"], m["values"]) for m in measured] == [(0, [100.0] * 3), (1, [60.0] * 3), (2, [80.0] * 3)]
    verdicts = payloads(ledger, run_id, "research_iteration")
    assert [(v["iteration"], v["kept"], v["median"]) for v in verdicts] == [(1, True, 60.0), (2, False, 80.0),
                                                                           (3, False, None)]
    assert "step budget" in verdicts[2]["reason"]  # its checks never passed: not even measured
    started = payloads(ledger, run_id, "attempt_started")
    assert [s["tree"] for s in started][1:] == [verdicts[0]["tree"]] * 2  # later proposals start from the best
    # the kept change is a commit of its own on the run's branch; the delivered tree is the best
    assert git(work_repo, "show", f"{summary['branch']}:work.py") == WORK.format(cost=60)
    log = git(work_repo, "log", "--format=%s", summary["branch"]).splitlines()
    assert log[-2].startswith("research: iteration 1: 60 beats 100")
    assert "100 on the base, 60 at the best of 3" in summary["reason"]
    assert git(work_repo, "status", "--porcelain") == "" and (work_repo / "work.py").read_text() == \
        WORK.format(cost=100)  # the user's checkout is untouched

    report = replay_run(ledger, run_id)  # the same path: recorded measurements, the same verdicts
    assert report.identical and report.replay_status == "succeeded", report.as_dict()
    replayed = payloads(ledger, report.replay_run_id, "metric_measured")
    assert all(m["replayed"] for m in replayed) and [m["median"] for m in replayed] == [100.0, 60.0, 80.0]


def test_higher_is_better_and_a_gain_within_the_noise_is_not_kept(ledger: Ledger, work_repo: Path, tmp_path: Path):
    # the metric's noise on the base: 100 and 104 alternate (a file in the export counts the runs)
    noisy = ("python -c 'import os, work; p=\".runs\"; n=int(open(p).read()) if os.path.exists(p) else 0; "
             "open(p,\"w\").write(str(n+1)); print(work.COST + 4 * (n % 2))'")
    turns = [write(103, 1), write(110, 2)]
    summary = run_scripted(ledger, work_repo, tmp_path, turns, policy(noisy, iterations=2, repeats=2,
                                                                      direction="higher"))
    assert summary["status"] == "succeeded", summary
    base = payloads(ledger, summary["run_id"], "metric_measured")[0]
    assert base["spread"] == 4.0, base
    verdicts = payloads(ledger, summary["run_id"], "research_iteration")
    assert [v["kept"] for v in verdicts] == [False, True], verdicts  # 105 is within 102 + 4; 112 is not
    assert git(work_repo, "show", f"{summary['branch']}:work.py") == WORK.format(cost=110)


def test_no_change_beating_the_base_stops_the_run_delivering_the_base(ledger: Ledger, work_repo: Path,
                                                                        tmp_path: Path):
    summary = run_scripted(ledger, work_repo, tmp_path, [write(120, 1)], policy(iterations=1))
    assert summary["status"] == "stopped" and finished_rule(ledger, summary) == "research.no_gain", summary
    assert git(work_repo, "show", f"{summary['branch']}:work.py") == WORK.format(cost=100)


@pytest.mark.parametrize(("metric", "rule", "words"), [
    ("echo no number here", "research.metric", "printed no number"),
    ("./missing-bench.sh", "research.metric", "exited 127"),
    ("python -c 'import os; n=len(os.listdir(\".\")); open(f\"r{n}\",\"w\").close(); print(10 ** n)'",
     "research.noise", "too noisy"),  # 10^k, one more file each run: the spread is many times the median
    ("sleep 5; echo 1", "research.metric", "timed out"),
])
def test_a_metric_that_cannot_judge_stops_the_run_before_any_model_call(ledger: Ledger, work_repo: Path,
                                                                        tmp_path: Path, metric: str, rule: str,
                                                                        words: str):
    summary = run_scripted(ledger, work_repo, tmp_path, [write(60, 1)], policy(metric, timeout_s=1))
    assert summary["status"] == "stopped" and finished_rule(ledger, summary) == rule, summary
    assert words in summary["reason"], summary["reason"]
    assert payloads(ledger, summary["run_id"], "model_response") == []


def test_the_guard_holds_inside_a_proposal(ledger: Ledger, work_repo: Path, tmp_path: Path):
    """A proposal that writes where the policy denies is refused like any other write; the run goes on."""
    turns = [{**call("write_file", path="test_work.py", content="def test_total():\n    pass\n"), "attempt": 1},
             write(50, 1)]
    summary = run_scripted(ledger, work_repo, tmp_path, turns,
                           policy(iterations=1) + '[writes]\ndeny = ["test_*.py"]\n')
    assert summary["status"] == "succeeded", summary
    denials = [d for d in summary["denials"] if d["rule"].startswith("writes.")]
    assert denials and "test_work.py" in str(denials[0]), summary["denials"]
    assert git(work_repo, "show", f"{summary['branch']}:test_work.py") == TEST


def test_a_research_policy_without_a_metric_or_a_step_budget_is_refused():
    with pytest.raises(PolicyError, match="needs \\[research\\] metric"):
        parse_policy('[agent]\narchitecture = "research"\n[budget]\nmax_steps = 3\n', Path("tether.toml"))
    with pytest.raises(PolicyError, match="needs \\[budget\\] max_steps"):
        parse_policy('[agent]\narchitecture = "research"\n[research]\nmetric = "echo 1"\n', Path("tether.toml"))
    with pytest.raises(PolicyError, match="direction"):
        parse_policy('[research]\ndirection = "sideways"\n', Path("tether.toml"))


def test_show_prints_the_curve_and_writes_the_plot(ledger: Ledger, work_repo: Path, tmp_path: Path,
                                                   sqlite_url: str):
    from typer.testing import CliRunner

    from tether.cli import app

    summary = run_scripted(ledger, work_repo, tmp_path, [write(60, 1), write(80, 2)], policy(iterations=2))
    run_id = summary["run_id"]
    assert [(p["iteration"], p["median"], p["kept"]) for p in summary["research"]] == \
        [(0, 100.0, True), (1, 60.0, True), (2, 80.0, False)]
    runner = CliRunner()
    shown = runner.invoke(app, ["show", run_id, "--db", sqlite_url, "--html", str(tmp_path / "r.html")],
                          env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "base 100 (noise 0) → 1: 60 kept → 2: 80 reverted" in shown.output
    assert "2 steps / 2 a try" in shown.output  # max_steps is each proposal's, not the run's
    page = (tmp_path / "r.html").read_text()
    assert page.count("<circle") == 3 and "#c0392b" in page and "1 of 2 proposals kept" in page
    from tether.web.views import timeline

    titles = [row.title for row in timeline(ledger.events(run_id)) if row.type.startswith(("metric", "research"))]
    assert titles == ["metric of the base: 100 (100, 100, 100)", "metric of proposal 1: 60 (60, 60, 60)",
                      "proposal 1 kept: 60 beats 100 by more than the noise (0)",
                      "metric of proposal 2: 80 (80, 80, 80)",
                      "proposal 2 reverted: 80 does not beat 60 by more than the noise (0)"]
    plain = run_scripted(ledger, work_repo, tmp_path, [call("submit", summary="x")], "")
    refused = runner.invoke(app, ["show", plain["run_id"], "--db", sqlite_url, "--html", str(tmp_path / "p.html")])
    assert refused.exit_code == 2 and "neither a research nor a factory run" in refused.output


@pytest.mark.slow
def test_a_research_run_killed_at_any_event_resumes_to_the_same_story(work_repo: Path, tmp_path: Path,
                                                                       sqlite_url: str):
    """SIGKILL right after each event (a kept proposal, a reverted one): resumed, the run tells the same
    story (no proposal judged twice, nothing measured twice) and delivers the same tree."""
    from tests.conftest import resumes_after_every_kill, script

    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(policy(iterations=2, repeats=1))
    model = script(tmp_path / "turns.json", [write(60, 1), write(80, 2)])
    ledger = Ledger(sqlite_url)
    story = resumes_after_every_kill(ledger, sqlite_url, work_repo, policy_file, model, "iteration")
    assert ("metric_measured", 2) in story
    ledger.close()


def test_a_proposal_without_a_change_is_not_measured(ledger: Ledger, work_repo: Path, tmp_path: Path):
    turns = [{**call("submit", summary="nothing to do"), "attempt": 1}, write(60, 2)]
    summary = run_scripted(ledger, work_repo, tmp_path, turns, policy(iterations=2))
    assert summary["status"] == "succeeded", summary
    verdicts = payloads(ledger, summary["run_id"], "research_iteration")
    assert (verdicts[0]["kept"], verdicts[0]["reason"]) == (False, "no change was proposed")
    assert [m["iteration"] for m in payloads(ledger, summary["run_id"], "metric_measured")] == [0, 2]


def test_the_shipped_example_loads_and_its_metric_reads(tmp_path: Path):
    import shutil
    import subprocess
    import sys

    from tether.agents.research import read_metric
    from tether.policy import load_policy

    example = Path(__file__).parents[2] / "examples" / "research-primes"
    policy = load_policy(example / "tether.toml")
    assert policy.agent.architecture == "research" and policy.research.metric == "python bench.py"
    copy = shutil.copytree(example, tmp_path / "primes")
    printed = subprocess.run([sys.executable, "bench.py"], cwd=copy, capture_output=True, text=True, check=True)
    assert read_metric(printed.stdout) > 0
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_primes.py"],
                           cwd=copy, capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout


def test_the_wall_budget_holds_while_the_metric_runs(ledger: Ledger, work_repo: Path, tmp_path: Path):
    """Like a check, a measurement is given only the run's time left, not its own timeout."""
    import time

    started = time.monotonic()
    summary = run_scripted(ledger, work_repo, tmp_path, [write(60, 1)],
                           policy("sleep 30; echo 1").replace("max_steps = 2\n", "max_steps = 2\nmax_wall_s = 3\n"))
    assert time.monotonic() - started < 25, summary
    assert summary["status"] == "stopped" and "timed out" in summary["reason"], summary
