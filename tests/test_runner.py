"""End-to-end guarded runs with scripted models: real git, real bubblewrap, real SQLite."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import CHECK, FIX, bash, call, event_types, git, payloads, person, run_scripted
from tether.approvals import decide_approval
from tether.ledger import Ledger
from tether.runner import RunError, continue_run

SUBMIT = call("submit", summary="done")


def branch_file(repo: Path, branch: str, path: str) -> str:
    return git(repo, "show", f"{branch}:{path}")


def test_scripted_agent_fixes_failing_test_and_branch_passes_checks(ledger: Ledger, repo: Path, tmp_path: Path):
    turns = [
        bash("python -m pytest -q -p no:cacheprovider raindrops_test.py"),
        call("write_file", path="raindrops.py", content=FIX),
        SUBMIT,
    ]
    summary = run_scripted(ledger, repo, tmp_path, turns, CHECK)
    assert summary["status"] == "succeeded", summary
    assert summary["checks"] == [{"name": "tests", "required": True, "passed": True, "exit_code": 0, "output_tail": ""}]
    results = payloads(ledger, summary["run_id"], "tool_result")
    assert results[0]["exit_code"] != 0  # the test really failed first
    # The delivered branch holds the fix and its commit passes the check on its own.
    assert branch_file(repo, summary["branch"], "raindrops.py") == FIX
    check_out = tmp_path / "verify"
    git(repo, "worktree", "add", "-q", str(check_out), summary["commit"])
    assert subprocess.run(["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "raindrops_test.py"],
                          cwd=check_out).returncode == 0
    assert ledger.verify(summary["run_id"]).ok
    # every tool step records the worktree tree id
    assert all(len(r["tree"]) == 40 for r in results)
    assert results[1]["tree"] != results[0]["tree"]


def test_user_checkout_index_and_uncommitted_files_untouched(ledger: Ledger, repo: Path, tmp_path: Path):
    (repo / "notes.txt").write_text("my uncommitted notes\n")
    (repo / "raindrops.py").write_text("# my local edit, staged\n")
    git(repo, "add", "raindrops.py")
    before_status = git(repo, "status", "--porcelain=v1", "--untracked-files=all")
    before_head = git(repo, "rev-parse", "HEAD")
    before_index = git(repo, "ls-files", "-s")
    turns = [call("write_file", path="raindrops.py", content=FIX), bash("rm -f raindrops_test.py"), SUBMIT]
    run_scripted(ledger, repo, tmp_path, turns)
    assert git(repo, "status", "--porcelain=v1", "--untracked-files=all") == before_status
    assert git(repo, "rev-parse", "HEAD") == before_head
    assert git(repo, "ls-files", "-s") == before_index
    assert (repo / "notes.txt").read_text() == "my uncommitted notes\n"
    assert (repo / "raindrops.py").read_text() == "# my local edit, staged\n"
    assert (repo / "raindrops_test.py").exists()


def test_required_check_failures_go_back_to_the_model_and_count_as_rework(ledger, repo, tmp_path):
    turns = [SUBMIT, call("write_file", path="raindrops.py", content=FIX), SUBMIT]
    summary = run_scripted(ledger, repo, tmp_path, turns, CHECK)
    assert summary["status"] == "succeeded"
    assert summary["rework"] == 1
    first_submit = payloads(ledger, summary["run_id"], "tool_result")[0]
    assert first_submit["observation"].startswith("Required checks failed")
    assert "FAILED" in first_submit["observation"] or "failed" in first_submit["observation"]


def test_run_without_passing_checks_never_succeeds(ledger, repo, tmp_path):
    summary = run_scripted(ledger, repo, tmp_path, [SUBMIT], CHECK)
    assert summary["status"] == "failed"
    assert "ran out of turns" in summary["reason"]


def test_script_exhaustion_fails_with_clear_reason(ledger, repo, tmp_path):
    summary = run_scripted(ledger, repo, tmp_path, [bash("true")])
    assert summary["status"] == "failed"
    assert summary["reason"] == "the scripted model ran out of turns after 1"


# budgets ------------------------------------------------------------------------------------


def test_step_budget_stops_before_the_next_model_call(ledger, repo, tmp_path):
    summary = run_scripted(ledger, repo, tmp_path, [bash("echo a"), bash("echo b"), bash("echo c")],
                           "[budget]\nmax_steps = 2")
    assert summary["status"] == "stopped"
    assert summary["usage"]["steps"] == 2
    assert summary["denials"][-1]["rule"] == "budget.max_steps"
    assert event_types(ledger, summary["run_id"]).count("model_request") == 2


def test_tool_call_budget_refuses_the_extra_call(ledger, repo, tmp_path):
    turns = [bash("echo 1"), bash("echo 2"), bash("touch never-made")]
    summary = run_scripted(ledger, repo, tmp_path, turns, "[budget]\nmax_tool_calls = 2")
    assert summary["status"] == "stopped"
    assert summary["denials"][-1]["rule"] == "budget.max_tool_calls"
    last = payloads(ledger, summary["run_id"], "tool_result")[-1]
    assert last["executed"] is False
    assert "never-made" not in git(repo, "ls-tree", "-r", "--name-only", summary["branch"])


def test_token_budget_refuses_a_call_whose_prompt_alone_would_exceed(ledger, repo, tmp_path):
    usage = {"input_tokens": 600, "output_tokens": 100}
    summary = run_scripted(ledger, repo, tmp_path, [bash("echo 1", usage=usage), bash("echo 2", usage=usage)],
                           "[budget]\nmax_tokens = 800")
    assert summary["status"] == "stopped"
    assert summary["denials"][-1]["rule"] == "budget.max_tokens"
    assert summary["usage"]["tokens"] == 700  # the second call was never made


def test_usd_budget(ledger, repo, tmp_path):
    turns = [bash("echo 1", cost_usd=0.6), bash("echo 2", cost_usd=0.6), bash("echo 3", cost_usd=0.6)]
    summary = run_scripted(ledger, repo, tmp_path, turns, "[budget]\nmax_usd = 1.0")
    assert summary["status"] == "stopped"
    assert summary["denials"][-1]["rule"] == "budget.max_usd"
    assert summary["usage"]["usd"] == pytest.approx(1.2)


def test_wall_budget_caps_command_time_and_stops(ledger, repo, tmp_path):
    summary = run_scripted(ledger, repo, tmp_path, [bash("sleep 30"), bash("echo late")],
                           "[budget]\nmax_wall_s = 2")
    assert summary["status"] == "stopped"
    assert summary["denials"][-1]["rule"] == "budget.max_wall_s"
    assert summary["usage"]["wall_s"] < 10


# command and path rules ---------------------------------------------------------------------


def test_denied_command_is_not_run_and_reason_goes_to_model(ledger, repo, tmp_path):
    turns = [bash("touch marker && git push origin main"), bash("echo next"), SUBMIT]
    summary = run_scripted(ledger, repo, tmp_path, turns, '[commands]\ndeny = ["git push"]')
    run_id = summary["run_id"]
    denied = payloads(ledger, run_id, "policy_decision")[0]
    assert denied["verdict"] == "deny" and denied["rule"] == "commands.deny"
    result = payloads(ledger, run_id, "tool_result")[0]
    assert result["executed"] is False and "matches deny rule 'git push'" in result["observation"]
    assert "marker" not in git(repo, "ls-tree", "-r", "--name-only", summary["branch"])
    assert summary["status"] == "succeeded"  # the run went on


def test_allow_list_refuses_unlisted_commands(ledger, repo, tmp_path):
    turns = [bash("ls"), bash("python -c 'print(1)'"), bash("echo $(id)"), SUBMIT]
    summary = run_scripted(ledger, repo, tmp_path, turns, '[commands]\nallow = ["ls", "re:^echo "]')
    results = payloads(ledger, summary["run_id"], "tool_result")
    assert [r["executed"] for r in results[:3]] == [True, False, False]
    assert [d["rule"] for d in summary["denials"]] == ["commands.allow", "commands.allow"]


@pytest.mark.parametrize("path, rule", [
    ("../outside.txt", "paths.outside"),
    ("/etc/passwd", "paths.outside"),
    (".git/config", "paths.git"),
    ("link/escape.txt", "paths.outside"),
])
def test_writes_outside_the_worktree_or_into_git_are_denied(ledger, repo, tmp_path, path, rule):
    (repo / "link").symlink_to(tmp_path)
    git(repo, "add", "link")
    git(repo, "-c", "user.email=d@e", "-c", "user.name=d", "commit", "-qm", "symlink")
    summary = run_scripted(ledger, repo, tmp_path, [call("write_file", path=path, content="x"), SUBMIT])
    assert summary["denials"][0]["rule"] == rule
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path / "escape.txt").exists()


def test_write_deny_pattern_blocks_write_file_and_rolls_back_bash(ledger, repo, tmp_path):
    turns = [
        call("write_file", path="secrets/.env", content="X=1"),
        bash("mkdir -p secrets && echo X=1 > secrets/.env && echo ok > fine.txt"),
        SUBMIT,
    ]
    summary = run_scripted(ledger, repo, tmp_path, turns, '[writes]\ndeny = [".env"]')
    rules = [d["rule"] for d in summary["denials"]]
    assert rules == ["writes.deny", "writes.deny"]
    rolled = payloads(ledger, summary["run_id"], "tool_result")[1]
    assert "rolled back" in rolled["observation"] and rolled["changed"] == []
    files = git(repo, "ls-tree", "-r", "--name-only", summary["branch"])
    assert "secrets/.env" not in files and "fine.txt" not in files  # the whole step is undone


def test_write_allow_list(ledger, repo, tmp_path):
    turns = [call("write_file", path="docs/x.md", content="x"), call("write_file", path="raindrops.py", content=FIX),
             SUBMIT]
    summary = run_scripted(ledger, repo, tmp_path, turns, '[writes]\nallow = ["*.py"]')
    assert [d["rule"] for d in summary["denials"]] == ["writes.allow"]
    assert branch_file(repo, summary["branch"], "raindrops.py") == FIX


# write caps ---------------------------------------------------------------------------------


def test_line_cap_rolls_back_the_step_and_tells_the_model(ledger, repo, tmp_path):
    big = "\n".join(f"x = {i}" for i in range(50)) + "\n"
    turns = [call("write_file", path="raindrops.py", content=FIX), call("write_file", path="big.py", content=big),
             bash("ls"), SUBMIT]
    summary = run_scripted(ledger, repo, tmp_path, turns, "[writes]\nmax_lines = 20")
    assert summary["denials"][0]["rule"] == "writes.max_lines"
    results = payloads(ledger, summary["run_id"], "tool_result")
    assert results[1]["ok"] is False and "rolled back" in results[1]["observation"]
    assert "big.py" not in results[2]["observation"]  # the files themselves were restored
    assert results[2]["tree"] == results[1]["tree"] == results[0]["tree"]
    files = git(repo, "ls-tree", "-r", "--name-only", summary["branch"]).split()
    assert "big.py" not in files
    assert branch_file(repo, summary["branch"], "raindrops.py") == FIX  # the earlier step is kept


def test_file_cap(ledger, repo, tmp_path):
    turns = [bash("echo a > a.txt && echo b > b.txt && echo c > c.txt"), bash("echo a > a.txt"), SUBMIT]
    summary = run_scripted(ledger, repo, tmp_path, turns, "[writes]\nmax_files = 2")
    assert summary["denials"][0]["rule"] == "writes.max_files"
    assert summary["diffstat"]["files"] == 1


# ownership and approvals --------------------------------------------------------------------

PROTECTED = '[ownership.protected]\n"LICENSE" = ["@legal"]\n'


def test_protected_write_pauses_until_approved_then_continues(ledger, repo, tmp_path):
    turns = [call("write_file", path="LICENSE", content="new licence\n"), SUBMIT]
    paused = run_scripted(ledger, repo, tmp_path, turns, PROTECTED)
    run_id = paused["run_id"]
    assert paused["status"] == "awaiting_approval"
    assert ledger.get_run(run_id).status == "awaiting_approval"
    request = payloads(ledger, run_id, "approval_requested")[0]
    assert request["owners"] == ["@legal"] and request["paths"] == ["LICENSE"]
    with pytest.raises(RunError, match="still waits"):
        continue_run(ledger, run_id)
    decide_approval(ledger, run_id, True, person("legal"), "fine")
    done = continue_run(ledger, run_id)
    assert done["status"] == "succeeded"
    assert done["approvals"][0]["decision"] == "approved" and done["approvals"][0]["by"] == "legal"
    assert branch_file(repo, done["branch"], "LICENSE") == "new licence\n"
    assert ledger.verify(run_id).ok
    with pytest.raises(RunError, match="is succeeded"):
        decide_approval(ledger, run_id, True, person("bob"), "")


def test_denied_approval_is_returned_to_the_model(ledger, repo, tmp_path):
    turns = [call("write_file", path="LICENSE", content="new\n"), SUBMIT]
    paused = run_scripted(ledger, repo, tmp_path, turns, PROTECTED)
    decide_approval(ledger, paused["run_id"], False, person("carol"), "licence changes need legal review")
    done = continue_run(ledger, paused["run_id"])
    result = payloads(ledger, done["run_id"], "tool_result")[0]
    assert result["executed"] is False
    assert "carol denied the write to LICENSE: licence changes need legal review" in result["observation"]
    assert branch_file(repo, done["branch"], "LICENSE") == (repo / "LICENSE").read_text()


def test_interactive_approver_decides_inline(ledger, repo, tmp_path):
    asked = []

    def approver(request):
        asked.append(request)
        return True, "legal", "ok"  # the owner, at the terminal

    turns = [call("edit_file", path="LICENSE", old="MIT License", new="MIT Licence"), SUBMIT]
    summary = run_scripted(ledger, repo, tmp_path, turns, PROTECTED, approver=approver)
    assert summary["status"] == "succeeded" and len(asked) == 1
    assert "MIT Licence" in branch_file(repo, summary["branch"], "LICENSE")
    assert "-MIT License\n+MIT Licence" in asked[0]["diff"]  # approvers see the change


@pytest.mark.parametrize("who", ["dave", "ops", "legal-ish"])  # the requester: test_delivery.py
def test_inline_approval_by_someone_not_an_owner_waits_for_an_owner(ledger, repo, tmp_path, who):
    turns = [call("write_file", path="LICENSE", content="relicensed\n"), SUBMIT]
    summary = run_scripted(ledger, repo, tmp_path, turns, PROTECTED, approver=lambda request: (True, who, "ok"))
    assert summary["status"] == "awaiting_approval"
    refused = [d for d in payloads(ledger, summary["run_id"], "policy_decision") if d["rule"] == "approvals.not_owner"]
    assert refused and f"{who} may not approve" in refused[0]["reason"]
    assert not payloads(ledger, summary["run_id"], "approval_decided")
    with pytest.raises(RunError, match="may not approve"):
        decide_approval(ledger, summary["run_id"], True, person(who), "again")
    decide_approval(ledger, summary["run_id"], True, person("@legal"), "fine")
    done = continue_run(ledger, summary["run_id"])
    assert done["status"] == "succeeded"
    assert branch_file(repo, done["branch"], "LICENSE") == "relicensed\n"


def test_inline_denial_by_anyone_is_recorded_and_returned(ledger, repo, tmp_path):
    turns = [call("write_file", path="LICENSE", content="x\n"), SUBMIT]
    summary = run_scripted(ledger, repo, tmp_path, turns, PROTECTED, approver=lambda request: (False, "dave", "no"))
    assert summary["status"] == "succeeded"
    observation = payloads(ledger, summary["run_id"], "tool_result")[0]["observation"]
    assert "dave denied the write to LICENSE: no" in observation


def test_codeowners_from_base_commit_protects_paths(ledger, repo, tmp_path):
    (repo / ".github").mkdir()
    (repo / ".github" / "CODEOWNERS").write_text("*.py @python-team\n")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=d@e", "-c", "user.name=d", "commit", "-qm", "owners")
    turns = [bash("rm .github/CODEOWNERS"), call("write_file", path="raindrops.py", content=FIX), SUBMIT]
    summary = run_scripted(ledger, repo, tmp_path, turns, "")
    assert summary["status"] == "awaiting_approval"
    assert payloads(ledger, summary["run_id"], "approval_requested")[0]["owners"] == ["@python-team"]


def test_bash_changing_a_protected_path_is_rolled_back(ledger, repo, tmp_path):
    summary = run_scripted(ledger, repo, tmp_path, [bash("echo gone > LICENSE"), SUBMIT], PROTECTED)
    assert summary["denials"][0]["rule"] == "ownership.protected"
    assert branch_file(repo, summary["branch"], "LICENSE") == (repo / "LICENSE").read_text()


# brakes -------------------------------------------------------------------------------------


def test_repeat_brake_stops_before_the_repeated_action_runs(ledger, repo, tmp_path):
    turns = [bash("echo same >> log.txt")] * 5
    summary = run_scripted(ledger, repo, tmp_path, turns, "[brakes]\nrepeat_max = 3\nrepeat_window = 5")
    assert summary["status"] == "stopped"
    assert summary["brakes"][0]["detector"] == "repeat"
    assert summary["brakes"][0]["evidence"]["count"] == 4
    results = payloads(ledger, summary["run_id"], "tool_result")
    assert [r["executed"] for r in results] == [True, True, True]
    assert branch_file(repo, summary["branch"], "log.txt") == "same\nsame\nsame\n"


def test_consecutive_failure_brake(ledger, repo, tmp_path):
    turns = [bash(f"false {i}") for i in range(6)]
    summary = run_scripted(ledger, repo, tmp_path, turns, "[brakes]\nmax_consecutive_failures = 3")
    assert summary["status"] == "stopped"
    assert summary["brakes"][0]["detector"] == "consecutive_failures"
    assert summary["usage"]["tool_calls"] == 3


def test_no_progress_brake(ledger, repo, tmp_path):
    turns = [bash(f"cat raindrops.py # {i}") for i in range(8)]
    summary = run_scripted(ledger, repo, tmp_path, turns, "[brakes]\nmax_steps_without_change = 4")
    assert summary["status"] == "stopped"
    assert summary["brakes"][0]["detector"] == "no_progress"
    assert summary["usage"]["tool_calls"] == 4


# bad tool calls -----------------------------------------------------------------------------


def test_unknown_tool_and_bad_arguments_are_refused_not_crashed(ledger, repo, tmp_path):
    turns = [call("rm_rf", path="/"), call("write_file", path="x.py"), call("edit_file", path="raindrops.py",
             old="not there", new="y"), SUBMIT]
    summary = run_scripted(ledger, repo, tmp_path, turns)
    assert [d["rule"] for d in summary["denials"]] == ["tools.unknown", "tools.arguments"]
    edit = payloads(ledger, summary["run_id"], "tool_result")[2]
    assert edit["executed"] and not edit["ok"] and "occurs 0 times" in edit["observation"]
    assert summary["status"] == "succeeded"


def test_model_text_without_tool_calls_is_nudged(ledger, repo, tmp_path):
    summary = run_scripted(ledger, repo, tmp_path, [{"content": "thinking"}, SUBMIT])
    assert summary["status"] == "succeeded" and summary["usage"]["steps"] == 2


def test_event_log_has_the_whole_story(ledger, repo, tmp_path):
    summary = run_scripted(ledger, repo, tmp_path, [bash("echo hi"), SUBMIT], CHECK)
    types = event_types(ledger, summary["run_id"])
    assert types[0] == "run_started" and types[-1] == "run_finished"
    for expected in ("model_request", "model_response", "tool_call", "tool_result", "check_started",
                     "check_finished"):
        assert expected in types
    started = payloads(ledger, summary["run_id"], "run_started")[0]
    assert started["base_commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert started["policy"]["checks"][0]["name"] == "tests"


def test_same_run_on_sqlite_and_postgres(db_url: str, repo, tmp_path):
    store = Ledger(db_url)
    turns = [bash("echo hi"), call("write_file", path="raindrops.py", content=FIX), SUBMIT]
    summary = run_scripted(store, repo, tmp_path, turns, CHECK + PROTECTED)
    assert summary["status"] == "succeeded"
    assert store.verify(summary["run_id"]).ok
    assert event_types(store, summary["run_id"]).count("tool_result") == 3
    store.close()


def test_check_after_write_finishes_a_run_whose_model_never_submits(ledger, repo, tmp_path):
    wrong = "def convert(number):\n    return str(number)\n"
    turns = [call("write_file", path="raindrops.py", content=wrong),
             call("write_file", path="raindrops.py", content=FIX), bash("echo never reached")]
    summary = run_scripted(ledger, repo, tmp_path, turns, CHECK + "[agent]\ncheck_after_write = true\n")
    assert summary["status"] == "succeeded" and summary["usage"]["tool_calls"] == 2
    first = payloads(ledger, summary["run_id"], "tool_result")[0]
    assert first["ok"] and "The required checks fail" in first["observation"]
    assert [c["passed"] for c in payloads(ledger, summary["run_id"], "check_finished")] == [False, True]


def test_replies_without_actions_are_braked(ledger, repo, tmp_path):
    summary = run_scripted(ledger, repo, tmp_path, [{"content": "hmm"}] * 6, "[brakes]\nmax_turns_without_action = 3")
    assert summary["status"] == "stopped" and summary["brakes"][0]["detector"] == "no_action"
    assert summary["usage"]["steps"] == 3


# destructive whole-file writes -----------------------------------------------------------------

MODULE = "".join(f"def f{i}():\n    return {i}\n\n" for i in range(18))


def test_a_write_that_wipes_most_of_a_file_is_refused_and_edit_file_still_works(ledger, repo, tmp_path):
    (repo / "module.py").write_text(MODULE)
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=d@e", "-c", "user.name=d", "commit", "-qm", "module")
    turns = [call("write_file", path="module.py", content="FILE: module.py\n"),
             call("write_file", path="module.py", content=MODULE.replace("return 3\n", "return 33\n")),
             call("edit_file", path="module.py", old="return 4\n", new="return 44\n"),
             call("write_file", path="raindrops.py", content=FIX), SUBMIT]
    summary = run_scripted(ledger, repo, tmp_path, turns)
    decisions = payloads(ledger, summary["run_id"], "policy_decision")
    assert [d["rule"] for d in decisions] == ["writes.max_removed_share"]
    assert "would remove 54 of the 54 lines of 'module.py'" in decisions[0]["reason"]
    assert "edit_file" in payloads(ledger, summary["run_id"], "tool_result")[0]["observation"]
    delivered = branch_file(repo, summary["branch"], "module.py")
    assert "return 33" in delivered and "return 44" in delivered and delivered.count("def f") == 18
    assert branch_file(repo, summary["branch"], "raindrops.py") == FIX  # a 2-line stub may be rewritten


def test_the_destructive_write_rule_can_be_turned_off(ledger, repo, tmp_path):
    (repo / "module.py").write_text(MODULE)
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=d@e", "-c", "user.name=d", "commit", "-qm", "module")
    turns = [call("write_file", path="module.py", content="x = 1\n"), SUBMIT]
    summary = run_scripted(ledger, repo, tmp_path, turns, "[writes]\nmax_removed_share = 1.0\n")
    assert summary["denials"] == []
    assert branch_file(repo, summary["branch"], "module.py") == "x = 1\n"
