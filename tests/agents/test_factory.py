"""`architecture = "factory"`: the spec approved once per content hash before any model call; k
candidates scored by the visible evals; among those that pass, the judge's inputs run on each in the
judging sandbox and the largest group of identical behaviour wins, so a candidate that passes the
visible evals but disagrees with the others is rejected even when it came first. Bad input stops
with its reason; replay follows the record; the same guard holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import CHECK, FIX, call, git, payloads, person, run_scripted
from tether.approvals import decide_approval
from tether.ledger import Ledger
from tether.policy import PolicyError, parse_policy
from tether.replay import replay_run
from tether.runner import continue_run

# Right, written another way: the same behaviour on every input.
ALSO_RIGHT = ("def convert(number):\n    out = ''\n    if number % 3 == 0:\n        out += 'Pling'\n"
              "    if number % 5 == 0:\n        out += 'Plang'\n    if number % 7 == 0:\n        out += 'Plong'\n"
              "    return out or str(number)\n")
# Passes every visible test, wrong past them: what a loop that stops at the first pass delivers.
OVERFITTED = FIX + "\n\n_right = convert\n\n\ndef convert(number):\n" \
    "    return str(number) if number > 5000 else _right(number)\n"
WRONG = "def convert(number):\n    return str(number)\n"
HANGS = FIX + "\n\n_right = convert\n\n\ndef convert(number):\n    while number == 0:\n        pass\n" \
    "    return _right(number)\n"
INPUTS = "```python\nconvert(1)\nconvert(105)\nconvert(5005)\nassert convert(3) == 'Pling'\nconvert(0)\n```"


def policy(extra: str = "", candidates: int = 4, approve: bool = False, **factory: str) -> str:
    keys = "".join(f"{key} = {value}\n" for key, value in factory.items())
    return (f'[agent]\narchitecture = "factory"\ncheck_after_write = true\n[budget]\nmax_steps = 1\n'
            f'[factory]\ncandidates = {candidates}\napprove_spec = {str(approve).lower()}\n{keys}{CHECK}{extra}')


def candidate(index: int, content: str) -> dict:
    return {**call("write_file", path="raindrops.py", content=content), "attempt": index}


def judge(reply: str = INPUTS, candidates: int = 4) -> dict:
    return {"role": "judge", "attempt": candidates, "content": reply}


def test_the_largest_group_of_agreeing_candidates_wins_over_one_that_only_passes_the_visible_evals(
        ledger: Ledger, repo: Path, tmp_path: Path):
    turns = [candidate(0, OVERFITTED), candidate(1, FIX), candidate(2, WRONG), candidate(3, ALSO_RIGHT), judge()]
    summary = run_scripted(ledger, repo, tmp_path, turns, policy())
    assert summary["status"] == "succeeded", summary
    run_id = summary["run_id"]
    scored = payloads(ledger, run_id, "candidate_scored")
    assert [(s["candidate"], s["passed"]) for s in scored] == [(0, True), (1, True), (2, False), (3, True)]
    (inputs,) = payloads(ledger, run_id, "judge_inputs")
    assert inputs["inputs"] == ["convert(1)", "convert(105)", "convert(5005)", "convert(0)"]  # no assert
    behaviours = {tuple(b["candidates"]): b["outputs"] for b in payloads(ledger, run_id, "candidate_behaviour")}
    assert behaviours[(1,)] == behaviours[(3,)] == ["'1'", "'PlingPlangPlong'", "'PlangPlong'", "'PlingPlangPlong'"]
    assert behaviours[(0,)][2] == "'5005'"  # the overfitted one, past the visible tests
    (decided,) = payloads(ledger, run_id, "judge_decided")
    assert (decided["chosen"], decided["method"], decided["groups"]) == (1, "agreement", [[1, 3], [0]])
    assert git(repo, "show", f"{summary['branch']}:raindrops.py") == FIX
    assert "candidate 1 of 4" in summary["reason"] and "2 agree" in summary["reason"]
    assert git(repo, "status", "--porcelain") == ""  # the user's checkout is untouched
    judged = [e for e in ledger.events(run_id) if e.type == "model_response" and e.payload.get("role") == "judge"]
    assert len(judged) == 1

    report = replay_run(ledger, run_id)  # the same choice, from the recorded behaviours
    assert report.identical and report.replay_status == "succeeded", report.as_dict()
    assert all(b["replayed"] for b in payloads(ledger, report.replay_run_id, "candidate_behaviour"))


def test_identical_candidates_need_no_judge(ledger: Ledger, repo: Path, tmp_path: Path):
    turns = [candidate(0, FIX), candidate(1, FIX)]
    summary = run_scripted(ledger, repo, tmp_path, turns, policy(candidates=2))
    assert summary["status"] == "succeeded", summary
    (decided,) = payloads(ledger, summary["run_id"], "judge_decided")
    assert (decided["method"], decided["groups"]) == ("only", [[0, 1]])
    assert payloads(ledger, summary["run_id"], "judge_inputs") == []


def test_the_spec_is_approved_by_a_person_before_any_model_call_and_once_per_content(ledger: Ledger, repo: Path,
                                                                                   tmp_path: Path):
    (repo / "SPEC.md").write_text("# Raindrops\n\nconvert(n): Pling for 3, Plang for 5, Plong for 7, else n.\n")
    git(repo, "add", "SPEC.md")
    git(repo, "-c", "user.email=d@e", "-c", "user.name=D", "commit", "-qm", "spec")
    text = policy(candidates=2, approve=True, spec='"SPEC.md"', spec_owners='["alice"]')
    turns = [candidate(0, FIX), candidate(1, FIX)]
    summary = run_scripted(ledger, repo, tmp_path, turns, text)
    assert summary["status"] == "awaiting_approval", summary
    run_id = summary["run_id"]
    assert payloads(ledger, run_id, "model_request") == []  # nothing spent before the spec is approved
    (asked,) = payloads(ledger, run_id, "approval_requested")
    assert asked["rule"] == "factory.spec" and asked["owners"] == ["alice"] and "Plong for 7" in asked["diff"]
    with pytest.raises(Exception, match="may not approve"):
        decide_approval(ledger, run_id, True, person("mallory"), "")
    decide_approval(ledger, run_id, True, person("alice"), "reads right")
    finished = continue_run(ledger, run_id)
    assert finished["status"] == "succeeded", finished
    types = [e.type for e in ledger.events(run_id)]
    assert types.index("approval_decided") < types.index("model_request")
    # the same spec again: approved before, not asked again; a changed spec is asked again
    again = run_scripted(ledger, repo, tmp_path, turns, text)
    assert again["status"] == "succeeded", again
    (allowed,) = [d for d in payloads(ledger, again["run_id"], "policy_decision") if d["rule"] == "factory.spec"]
    assert allowed["verdict"] == "allow" and "approved by alice" in allowed["reason"]
    (repo / "SPEC.md").write_text("# Raindrops\n\nconvert(n): Pling for 3 only.\n")
    git(repo, "-c", "user.email=d@e", "-c", "user.name=D", "commit", "-qam", "spec changed")
    changed = run_scripted(ledger, repo, tmp_path, turns, text)
    assert changed["status"] == "awaiting_approval"


def test_a_denied_spec_stops_the_run(ledger: Ledger, repo: Path, tmp_path: Path):
    text = policy(candidates=2, approve=True, spec_owners='["alice"]')
    summary = run_scripted(ledger, repo, tmp_path, [candidate(0, FIX)], text)
    decide_approval(ledger, summary["run_id"], False, person("bob"), "not this")
    finished = continue_run(ledger, summary["run_id"])
    assert finished["status"] == "stopped" and "bob did not approve the spec: not this" in finished["reason"]
    assert payloads(ledger, summary["run_id"], "model_request") == []


def test_candidates_that_all_disagree_go_to_a_person(ledger: Ledger, repo: Path, tmp_path: Path):
    turns = [candidate(0, OVERFITTED), candidate(1, FIX), judge(candidates=2)]
    text = policy(candidates=2, spec_owners='["alice"]')
    summary = run_scripted(ledger, repo, tmp_path, turns, text)
    assert summary["status"] == "awaiting_approval", summary
    (asked,) = payloads(ledger, summary["run_id"], "approval_requested")
    assert asked["rule"] == "factory.disagreement" and "raindrops.py" in asked["diff"]
    decide_approval(ledger, summary["run_id"], True, person("alice"), "")
    finished = continue_run(ledger, summary["run_id"])
    assert finished["status"] == "succeeded", finished
    (decided,) = payloads(ledger, summary["run_id"], "judge_decided")
    assert decided["method"] == "person" and decided["groups"] == [[0], [1]]
    assert len(payloads(ledger, summary["run_id"], "judge_inputs")) == 1  # not asked again after the pause

    stopping = run_scripted(ledger, repo, tmp_path, turns, policy(candidates=2, on_disagreement='"stop"'))
    assert stopping["status"] == "stopped" and "disagree" in stopping["reason"]
    assert payloads(ledger, stopping["run_id"], "judge_decided")[0]["method"] == "none"


@pytest.mark.parametrize("turns, extra, rule, words", [
    ([candidate(0, WRONG), candidate(1, WRONG)], {}, "factory.no_candidate", "none of 2 candidates"),
    ([candidate(0, FIX)], {"spec": '"MISSING.md"'}, "factory.spec", "no spec 'MISSING.md'"),
])
def test_bad_input_stops_with_its_reason(ledger: Ledger, repo: Path, tmp_path: Path, turns, extra, rule, words):
    summary = run_scripted(ledger, repo, tmp_path, turns, policy(candidates=2, **extra))
    assert summary["status"] == "stopped" and words in summary["reason"], summary
    assert payloads(ledger, summary["run_id"], "run_finished")[0]["rule"] == rule
    assert git(repo, "status", "--porcelain") == ""


def test_evals_that_pass_on_the_base_cannot_judge(ledger: Ledger, repo: Path, tmp_path: Path):
    passing = '[[checks]]\nname = "always"\ncommand = "true"\n'
    text = policy(candidates=2).replace(CHECK, passing)
    summary = run_scripted(ledger, repo, tmp_path, [candidate(0, FIX)], text)
    assert summary["status"] == "stopped" and "already pass on the base" in summary["reason"]
    assert payloads(ledger, summary["run_id"], "model_request") == []


def test_a_candidate_that_hangs_on_an_input_is_cut_off_and_loses(ledger: Ledger, repo: Path, tmp_path: Path):
    turns = [candidate(0, HANGS), candidate(1, FIX), candidate(2, ALSO_RIGHT), judge(candidates=3)]
    summary = run_scripted(ledger, repo, tmp_path, turns, policy(candidates=3, probe_timeout_s="2"))
    assert summary["status"] == "succeeded", summary
    hung = next(b for b in payloads(ledger, summary["run_id"], "candidate_behaviour") if b["candidates"] == [0])
    assert hung["outputs"][3] == "timed out"
    assert payloads(ledger, summary["run_id"], "judge_decided")[0]["chosen"] == 1


def test_a_probe_command_of_the_policy_runs_each_input(ledger: Ledger, repo: Path, tmp_path: Path):
    probe = '"python3 -c \\"import sys; from raindrops import convert; print(convert(int(sys.argv[1])))\\" {input}"'
    turns = [candidate(0, OVERFITTED), candidate(1, FIX), candidate(2, ALSO_RIGHT),
             judge("```\n5005\n1\n$(touch /tmp/pwned)\n```", candidates=3)]
    summary = run_scripted(ledger, repo, tmp_path, turns, policy(candidates=3, probe=probe))
    assert summary["status"] == "succeeded", summary
    outputs = {b["candidate"]: b["outputs"] for b in payloads(ledger, summary["run_id"], "candidate_behaviour")}
    assert outputs[1][:2] == ["PlangPlong", "1"] and outputs[0][0] == "5005"
    assert outputs[1][2].startswith("exit 1")  # quoted: an input is an argument, never shell
    assert not Path("/tmp/pwned").exists()


def test_the_policy_refuses_a_factory_without_evals_or_step_budget():
    with pytest.raises(PolicyError, match="required"):
        parse_policy('[agent]\narchitecture = "factory"\n[budget]\nmax_steps = 2\n', Path("t.toml"))
    with pytest.raises(PolicyError, match="max_steps"):
        parse_policy('[agent]\narchitecture = "factory"\n' + CHECK, Path("t.toml"))
    with pytest.raises(PolicyError, match="candidates"):
        parse_policy(policy(candidates=1), Path("t.toml"))


def test_a_candidate_is_under_the_same_guard_it_cannot_rewrite_the_visible_evals(ledger: Ledger, repo: Path,
                                                                                  tmp_path: Path):
    protect = '[ownership.protected]\n"raindrops_test.py" = ["@maintainers"]\n[approvals]\nunattended = "deny"\n'
    gamed = {**call("write_file", path="raindrops_test.py", content="def test_nothing():\n    pass\n"), "attempt": 0}
    summary = run_scripted(ledger, repo, tmp_path, [gamed, candidate(1, FIX)], policy(protect, candidates=2))
    assert summary["status"] == "succeeded", summary
    denied = [d for d in payloads(ledger, summary["run_id"], "policy_decision") if d["verdict"] == "deny"]
    assert denied and denied[0]["paths"] == ["raindrops_test.py"]
    scored = payloads(ledger, summary["run_id"], "candidate_scored")
    assert [(s["candidate"], s["passed"]) for s in scored] == [(0, False), (1, True)]
    assert git(repo, "show", f"{summary['branch']}:raindrops_test.py") == git(repo, "show", "HEAD:raindrops_test.py")


def test_show_prints_each_candidates_curve_and_writes_the_plot(ledger: Ledger, repo: Path, tmp_path: Path,
                                                                sqlite_url: str):
    from typer.testing import CliRunner

    from tether.cli import app
    from tether.web.views import timeline

    turns = [candidate(0, OVERFITTED), candidate(1, FIX), candidate(2, WRONG), candidate(3, ALSO_RIGHT), judge()]
    run_id = run_scripted(ledger, repo, tmp_path, turns, policy())["run_id"]
    shown = CliRunner().invoke(app, ["show", run_id, "--db", sqlite_url, "--html", str(tmp_path / "f.html")],
                               env={"COLUMNS": "220"})
    assert shown.exit_code == 0, shown.output
    assert "0 ✓ group 2 · 1 ✓ group 1, chosen · 2 · failed · 3 ✓ group 1; agreement on 4 judge inputs" in shown.output
    page = (tmp_path / "f.html").read_text()
    assert page.count("<circle") == 4 and "candidate 1 (chosen)" in page and "{1, 3}; {0}" in page
    titles = [row.title for row in timeline(ledger.events(run_id)) if row.type.startswith(("candidate", "judge"))]
    assert titles[2] == "candidate 2 failed the visible evals: step budget of 1 used"
    assert titles[-1].startswith("judge picked candidate 1 by agreement")


def test_tether_run_takes_the_spec_with_the_task_and_refuses_a_missing_one(repo: Path, tmp_path: Path,
                                                                           sqlite_url: str):
    import json

    from typer.testing import CliRunner

    from tether.cli import app

    (tmp_path / "policy.toml").write_text(policy(candidates=2, approve=True, spec_owners='["alice"]'))
    (tmp_path / "turns.json").write_text(json.dumps([candidate(0, FIX), candidate(1, FIX)]))
    (tmp_path / "SPEC.md").write_text("convert(n): Pling for 3, Plang for 5, Plong for 7.\n")
    base = ["run", "make the tests pass", "--repo", str(repo), "--db", sqlite_url, "--policy",
            str(tmp_path / "policy.toml"), "--model", f"scripted:{tmp_path / 'turns.json'}", "--no-input", "--json"]
    missing = CliRunner().invoke(app, [*base, "--spec", str(tmp_path / "NOPE.md")])
    assert missing.exit_code == 2 and "--spec: cannot read" in missing.output
    done = CliRunner().invoke(app, [*base, "--spec", str(tmp_path / "SPEC.md")])
    summary = json.loads(done.stdout)
    assert summary["status"] == "awaiting_approval"  # the spec went with the task, and is put to alice
    ledger = Ledger(sqlite_url)
    (asked,) = payloads(ledger, summary["run_id"], "approval_requested")
    assert "Plong for 7" in asked["diff"] and "make the tests pass" in asked["diff"]
    ledger.close()


@pytest.mark.slow
def test_a_factory_run_killed_at_any_event_resumes_to_the_same_choice(repo: Path, tmp_path: Path, sqlite_url: str):
    """SIGKILL right after each event (a candidate's write, its score, the judge's inputs, a
    behaviour, the decision): resumed, the run tells the same story (no candidate tried twice,
    nothing judged twice) and delivers the same tree."""
    from tests.conftest import resumes_after_every_kill, script

    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(policy(candidates=3))
    model = script(tmp_path / "turns.json", [candidate(0, OVERFITTED), candidate(1, FIX), candidate(2, ALSO_RIGHT),
                                            judge(candidates=3)])
    ledger = Ledger(sqlite_url)
    story = resumes_after_every_kill(ledger, sqlite_url, repo, policy_file, model, "candidate")
    assert ("judge_decided", None) in story and ("candidate_scored", 2) in story
    ledger.close()
