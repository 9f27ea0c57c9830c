"""`[agent] attempts`: independent tries from the base, each judged by the required checks, sharing
the run's tokens and time; resumed in the try a crash interrupted; replayed try by try."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import CHECK, FIX, bash, call, git, payloads, run_scripted, script, without_resumes
from tether.ledger import Ledger
from tether.policy import PolicyError, load_policy, parse_policy
from tether.render.steps import StepPrinter
from tether.replay import replay_run
from tether.runner import RunError, RunSpec, resume_run, start_run

WRONG = "def convert(number):\n    return str(number)\n"
ATTEMPTS = f"[agent]\nattempts = 3\ncheck_after_write = true\n[budget]\nmax_steps = 2\n{CHECK}"


def attempt(number: int, turn: dict) -> dict:
    return {**turn, "attempt": number}


def files_on(repo: Path, branch: str) -> set[str]:
    return set(git(repo, "ls-tree", "--name-only", branch).split())


def test_the_first_attempt_that_passes_the_checks_is_delivered_each_from_the_base(ledger, repo, tmp_path):
    turns = [attempt(0, call("write_file", path="raindrops.py", content=WRONG)),
             attempt(0, call("write_file", path="junk.py", content="x = 1\n")),
             attempt(1, bash("echo notes > notes.txt")),
             attempt(1, call("write_file", path="raindrops.py", content=WRONG + "# again\n")),
             attempt(2, call("write_file", path="raindrops.py", content=FIX))]
    summary = run_scripted(ledger, repo, tmp_path, turns, ATTEMPTS)
    assert summary["status"] == "succeeded", summary
    run_id = summary["run_id"]
    assert [p["attempt"] for p in payloads(ledger, run_id, "attempt_started")] == [0, 1, 2]
    ended = payloads(ledger, run_id, "attempt_ended")
    assert [(p["attempt"], p["rule"]) for p in ended] == [(0, "budget.max_steps"), (1, "budget.max_steps")]
    base = payloads(ledger, run_id, "run_started")[0]["base_tree"]
    assert {p["tree"] for p in payloads(ledger, run_id, "attempt_started")} == {base}
    assert all(p["tree"] != base for p in ended)  # each left work behind, and none of it carried over
    assert files_on(repo, summary["branch"]) == files_on(repo, "main")
    assert git(repo, "show", f"{summary['branch']}:raindrops.py") == FIX
    assert summary["attempts"] == 3
    assert summary["usage"]["steps"] == 5  # two tries of two steps, one of one: steps are each try's


def test_when_no_attempt_passes_the_run_stops_with_the_last_reason(ledger, repo, tmp_path):
    turns = [attempt(n, call("write_file", path="raindrops.py", content=WRONG + f"# {n}\n")) for n in range(3)]
    summary = run_scripted(ledger, repo, tmp_path, turns,
                           ATTEMPTS.replace("max_steps = 2", "max_steps = 1"))
    assert summary["status"] == "stopped"
    assert summary["reason"].startswith("none of 3 attempts passed the required checks; the last: step budget")
    assert len(payloads(ledger, summary["run_id"], "attempt_ended")) == 2
    assert git(repo, "show", f"{summary['branch']}:raindrops.py") == WRONG + "# 2\n"  # the last try's work


def test_tokens_are_the_runs_not_each_attempts(ledger, repo, tmp_path):
    usage = {"usage": {"input_tokens": 400, "output_tokens": 100}}
    turns = [attempt(n, call("write_file", path="raindrops.py", content=WRONG) | usage) for n in range(3)]
    policy = ATTEMPTS.replace("max_steps = 2", "max_steps = 1\nmax_tokens = 1100")
    summary = run_scripted(ledger, repo, tmp_path, turns, policy)
    assert summary["status"] == "stopped" and summary["denials"][-1]["rule"] == "budget.max_tokens", summary
    # two tries' worth: the third began, and its first prompt would not fit
    assert summary["usage"]["tokens"] == 1000 and summary["usage"]["steps"] == 2 and summary["attempts"] == 3


def test_a_brake_ends_an_attempt_and_the_next_starts_with_fresh_tallies(ledger, repo, tmp_path):
    turns = [attempt(0, bash("ls")), attempt(0, bash("ls")),
             attempt(1, bash("ls")), attempt(1, call("write_file", path="raindrops.py", content=FIX))]
    policy = ATTEMPTS.replace("max_steps = 2", "max_steps = 4") + "[brakes]\nrepeat_max = 1\nrepeat_window = 3\n"
    summary = run_scripted(ledger, repo, tmp_path, turns, policy)
    assert summary["status"] == "succeeded", summary
    (ended,) = payloads(ledger, summary["run_id"], "attempt_ended")
    assert ended["rule"] == "brakes.repeat"
    # attempt 1's `ls` ran: the tally of attempt 0 did not follow it
    assert [r["executed"] for r in payloads(ledger, summary["run_id"], "tool_result")] == [True, True, True]


def test_a_person_or_a_policy_denial_is_not_retried_away(ledger, repo, tmp_path):
    """Only a try that ran out of steps or was braked ends in another try: a wall-time stop ends the run."""
    turns = [attempt(0, bash("sleep 3")), attempt(1, call("write_file", path="raindrops.py", content=FIX))]
    policy = ATTEMPTS.replace("max_steps = 2", "max_steps = 2\nmax_wall_s = 2")
    summary = run_scripted(ledger, repo, tmp_path, turns, policy)
    assert summary["status"] == "stopped" and summary["denials"][-1]["rule"] == "budget.max_wall_s", summary
    assert payloads(ledger, summary["run_id"], "attempt_ended") == []


def test_the_live_view_says_when_an_attempt_ends(ledger, repo, tmp_path):
    console = Console(record=True, width=140, force_terminal=False)
    turns = [attempt(0, call("write_file", path="raindrops.py", content=WRONG)),
             attempt(1, call("write_file", path="raindrops.py", content=FIX))]
    policy = parse_policy(ATTEMPTS.replace("max_steps = 2", "max_steps = 1"), Path("tether.toml"))
    start_run(ledger, RunSpec("task", repo, policy, model=script(tmp_path / "t.json", turns)),
              on_event=StepPrinter(console))
    assert "attempt 1 ended (budget.max_steps); the next starts from the base" in console.export_text()


def test_attempts_need_the_harness(tmp_path):
    with pytest.raises(PolicyError, match="attempts = 2 needs architecture"):
        parse_policy('[agent]\narchitecture = "orchestrated"\nattempts = 2\n', Path("tether.toml"))
    with pytest.raises(PolicyError, match="attempts"):
        parse_policy("[agent]\nattempts = 0\n", Path("tether.toml"))


def test_an_external_agent_is_not_given_attempts(ledger, repo):
    policy = parse_policy("[agent]\nattempts = 2\n[budget]\nmax_steps = 5\n", Path("tether.toml"))
    with pytest.raises(RunError, match="attempts = 2 is for Tether's own harness"):
        start_run(ledger, RunSpec("task", repo, policy, agent="codex"))
    assert ledger.list_runs(10) == []


def test_replay_gives_each_attempt_its_own_recorded_turns(ledger, repo, tmp_path):
    turns = [attempt(0, call("write_file", path="raindrops.py", content=WRONG)),
             attempt(1, call("write_file", path="raindrops.py", content=FIX))]
    summary = run_scripted(ledger, repo, tmp_path, turns, ATTEMPTS.replace("max_steps = 2", "max_steps = 1"))
    assert summary["status"] == "succeeded"
    report = replay_run(ledger, summary["run_id"])
    assert report.identical and report.replay_status == "succeeded", report.as_dict()


DRIVER = Path(__file__).parents[1] / "crash_driver.py"


def test_sigkill_at_every_event_boundary_resumes_in_the_same_attempt(repo, tmp_path, sqlite_url):
    turns = [attempt(0, bash("echo one > notes.txt")), attempt(0, call("write_file", path="raindrops.py",
                                                                       content=WRONG)),
             attempt(1, call("write_file", path="raindrops.py", content=FIX))]
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(ATTEMPTS)
    model = script(tmp_path / "turns.json", turns)
    ledger = Ledger(sqlite_url)
    reference = start_run(ledger, RunSpec("crash test", repo, load_policy(policy_file), model=model))
    assert reference["status"] == "succeeded"
    expected = [(e.type, e.payload.get("attempt")) for e in ledger.events(reference["run_id"])]
    tree = git(repo, "rev-parse", f"{reference['branch']}^{{tree}}")
    for kill_after in range(1, len(expected)):
        known = {run.id for run in ledger.list_runs(1000)}
        code = subprocess.run([sys.executable, str(DRIVER), sqlite_url, str(kill_after), "start", str(repo),
                               str(policy_file), model], capture_output=True).returncode
        assert code == -9, f"the run was not killed after event {kill_after}"
        (run_id,) = {run.id for run in ledger.list_runs(1000)} - known
        summary = resume_run(ledger, run_id)
        where = f"killed after event {kill_after} ({expected[kill_after - 1][0]})"
        assert summary["status"] == "succeeded", where
        story = [(e.type, e.payload.get("attempt")) for e in without_resumes(ledger, run_id)]
        assert story == expected, where
        assert git(repo, "rev-parse", f"{summary['branch']}^{{tree}}") == tree, where
    ledger.close()
