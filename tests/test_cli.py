"""The command line as a user runs it: a real `tether` process, exit codes, JSON output."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.conftest import CHECK, FIX, bash, call, git, script, token_for
from tether.people import os_user

TETHER = [sys.executable, "-m", "tether"]


def tether(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TETHER, *args], cwd=cwd, capture_output=True, text=True, env=env)


def test_run_json_contract_and_exit_code(repo: Path, tmp_path: Path):
    (repo / "tether.toml").write_text(CHECK)
    model = script(tmp_path / "t.json", [call("write_file", path="raindrops.py", content=FIX),
                                         call("submit", summary="fixed")])
    result = tether("run", "Make the tests pass", "--model", model, "--json", cwd=repo)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    for key in ("run_id", "status", "reason", "branch", "usage", "checks", "denials", "brakes"):
        assert key in summary
    assert summary["status"] == "succeeded"
    assert set(summary["usage"]) >= {"tokens", "usd", "steps", "tool_calls", "wall_s"}
    assert "step   1  write_file" in result.stderr  # a line per step
    assert (repo / ".tether" / "tether.db").exists()
    assert git(repo, "status", "--porcelain") == "?? tether.toml\n"  # .tether/ ignores itself

    listed = json.loads(tether("runs", "--json", cwd=repo).stdout)
    assert [r["run_id"] for r in listed] == [summary["run_id"]]
    narrow = tether("runs", cwd=repo, env={**os.environ, "COLUMNS": "44"}).stdout
    assert summary["run_id"] in narrow and "succeeded" in narrow  # ids and states are never cut
    shown = tether("show", summary["run_id"][:17], "--events", cwd=repo)
    assert shown.returncode == 0 and "run_finished" in shown.stdout
    assert tether("verify", summary["run_id"], cwd=repo).returncode == 0


def test_exit_codes_for_stopped_and_paused_runs(repo: Path, tmp_path: Path):
    (repo / "tether.toml").write_text('[budget]\nmax_steps = 1\n[ownership.protected]\n"LICENSE" = ["@legal"]\n')
    stopped = tether("run", "x", "--model", script(tmp_path / "a.json", [bash("true"), bash("true")]), cwd=repo)
    assert stopped.returncode == 3, stopped.stderr
    assert "budget.max_steps" in stopped.stdout
    paused = tether("run", "x", "--json", "--model",
                    script(tmp_path / "b.json", [call("write_file", path="LICENSE", content="x")]), cwd=repo)
    assert paused.returncode == 4
    run_id = json.loads(paused.stdout)["run_id"]
    denied = tether("deny", run_id, "--reason", "no", "--json", cwd=repo)
    assert denied.returncode == 3  # continued, then the one-step budget stopped it
    after = json.loads(denied.stdout)
    assert after["approvals"][0]["by"] == os_user() and after["approvals"][0]["decision"] == "denied"
    assert after["denials"][-1]["rule"] == "budget.max_steps"


def test_a_paused_run_shows_the_diff_to_approve_and_the_commands(repo: Path, tmp_path: Path):
    (repo / "tether.toml").write_text('[ownership.protected]\n"LICENSE" = ["@legal"]\n')
    turns = [call("edit_file", path="LICENSE", old="MIT License", new="Apache License")]
    paused = tether("run", "x", "--no-input", "--model", script(tmp_path / "p.json", turns), cwd=repo)
    assert paused.returncode == 4, paused.stderr
    run_id = json.loads(tether("runs", "--json", cwd=repo).stdout)[0]["run_id"]
    for text in (paused.stderr, tether("approvals", cwd=repo).stdout):
        flat = " ".join(text.split())
        assert "-MIT License" in flat and "+Apache License" in flat
        assert "as @legal" in flat and f"tether approve {run_id} --reason" in flat
        assert f"tether deny {run_id}" in flat
    listed = json.loads(tether("approvals", "--json", cwd=repo).stdout)
    assert "+Apache License" in listed[0]["diff"]
    mallory = token_for(repo, "mallory")
    refused = tether("approve", run_id, cwd=repo, env={**os.environ, "TETHER_TOKEN": mallory})
    assert refused.returncode == 2 and "mallory may not approve" in refused.stderr


def test_a_failing_check_says_why_everywhere(repo: Path, tmp_path: Path):
    (repo / "tether.toml").write_text(CHECK)
    model = script(tmp_path / "f.json", [call("submit", summary="nothing done")])
    result = tether("run", "x", "--model", model, cwd=repo)
    assert result.returncode == 1
    run_id = json.loads(tether("runs", "--json", cwd=repo).stdout)[0]["run_id"]
    shown = tether("show", run_id, cwd=repo).stdout
    as_json = json.loads(tether("show", run_id, "--json", cwd=repo).stdout)
    full = tether("show", run_id, "--events", "--full", cwd=repo).stdout
    for text in (result.stderr, shown, as_json["checks"][0]["output_tail"], full):
        assert "FAILED raindrops_test.py::RaindropsTest::test_" in " ".join(text.split()), text[-2000:]
    assert "failed" in " ".join(shown.split())


def test_bad_policy_exits_2_and_nothing_runs(repo: Path, tmp_path: Path):
    (repo / "tether.toml").write_text("[budget]\nmax_usd = 'lots'\n")
    result = tether("run", "x", "--model", script(tmp_path / "t.json", [bash("true")]), cwd=repo)
    assert result.returncode == 2
    assert "tether.toml: budget.max_usd: Input should be a valid number" in result.stderr
    assert not (repo / ".tether").exists()
    assert git(repo, "branch", "--list", "tether/*") == ""


def test_missing_bubblewrap_refuses_unless_policy_says_none(repo: Path, tmp_path: Path):
    bin_dir = tmp_path / "bin"  # a PATH with git and python but no bwrap
    bin_dir.mkdir()
    for tool in ("git", "bash"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    model = script(tmp_path / "t.json", [bash("echo unsandboxed > out.txt"), call("submit", summary="s")])
    refused = tether("run", "x", "--model", model, cwd=repo, env=env)
    assert refused.returncode == 2 and "bubblewrap" in refused.stderr
    assert git(repo, "branch", "--list", "tether/*") == ""
    (repo / "tether.toml").write_text('[sandbox]\nmode = "none"\n')
    allowed = tether("run", "x", "--model", model, cwd=repo, env=env)
    assert allowed.returncode == 0, allowed.stderr


def test_verify_names_tampered_event(repo: Path, tmp_path: Path):
    model = script(tmp_path / "t.json", [bash("echo hi"), call("submit", summary="s")])
    run_id = json.loads(tether("run", "x", "--model", model, "--json", cwd=repo).stdout)["run_id"]
    db = sqlite3.connect(repo / ".tether" / "tether.db")
    (seq,) = db.execute("SELECT seq FROM events WHERE type = 'tool_result' AND run_id = ?", (run_id,)).fetchone()
    changed = db.execute("UPDATE events SET payload = replace(payload, 'hi', 'ho') WHERE seq = ? AND run_id = ?",
                         (seq, run_id)).rowcount
    db.commit()
    assert changed == 1
    db.close()
    result = tether("verify", run_id, cwd=repo)
    assert result.returncode == 1
    assert f"event {seq}:" in result.stderr and "edited" in result.stderr


def test_init_writes_a_valid_starter_and_refuses_to_overwrite(repo: Path):
    assert tether("init", cwd=repo).returncode == 0
    assert "[budget]" in (repo / "tether.toml").read_text()
    again = tether("init", cwd=repo)
    assert again.returncode == 2 and "exists" in again.stderr


def test_unknown_run_and_bad_model_spec(repo: Path):
    assert tether("show", "nope", cwd=repo).returncode == 2
    bad = tether("run", "x", "--model", "gpt-4", cwd=repo)
    assert bad.returncode == 2 and "model spec 'gpt-4'" in bad.stderr
    missing = tether("run", "x", "--model", "scripted:/no/such.json", cwd=repo)
    assert missing.returncode == 2 and "cannot read scripted turns" in missing.stderr


def _descendants_running(root: int, needle: str) -> list[int]:
    """Pids of processes below `root` whose command line contains `needle`."""
    table = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    rows = [line.split(None, 2) for line in table.splitlines() if len(line.split(None, 2)) == 3]
    children: dict[int, list[int]] = {}
    for pid, ppid, _ in rows:
        children.setdefault(int(ppid), []).append(int(pid))
    below, stack = set(), [root]
    while stack:
        for child in children.get(stack.pop(), []):
            below.add(child)
            stack.append(child)
    return [int(pid) for pid, _, args in rows if int(pid) in below and needle in args and "bwrap" not in args]


def _interrupt_at(repo: Path, model: str, needle: str) -> tuple[dict, str, list[int]]:
    """Start a run, Ctrl-C it while its command `needle` runs; the summary, stderr and the command's pids."""
    import signal
    import time

    # As in a terminal: Ctrl-C's signal at its default, even when the tests run in a background job,
    # which starts with it ignored (and every child with it).
    proc = subprocess.Popen([*TETHER, "run", "x", "--model", model, "--json"], cwd=repo, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 20
    while not (sleepers := _descendants_running(proc.pid, needle)):  # this run's command, nobody else's
        assert time.time() < deadline, "the command never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 3, stderr
    return json.loads(stdout), stderr, sleepers


def test_ctrl_c_holds_the_run_and_cancel_delivers_its_work(repo: Path, tmp_path: Path):
    import os

    model = script(tmp_path / "t.json", [call("write_file", path="kept.txt", content="work\n"), bash("sleep 30")])
    summary, _, sleepers = _interrupt_at(repo, model, "sleep 30")
    assert summary["status"] == "stopped" and summary["reason"] == "interrupted by the user"
    assert summary["held"] and summary["interrupts"] == 1
    for pid in sleepers:  # the command did not outlive the run
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"sleep {pid} survived the interrupted run")
    cancelled = tether("cancel", summary["run_id"], "--reason", "enough", cwd=repo)
    assert cancelled.returncode == 0, cancelled.stderr
    shown = json.loads(tether("show", summary["run_id"], "--json", cwd=repo).stdout)
    assert shown["status"] == "stopped" and not shown["held"] and shown["interrupts"] == 1  # one Ctrl-C, once
    assert git(repo, "show", f"{summary['branch']}:kept.txt") == "work\n"


def test_a_run_stopped_with_ctrl_c_resumes_where_it_was(repo: Path, tmp_path: Path):
    model = script(tmp_path / "t.json", [
        call("write_file", path="kept.txt", content="work\n"), bash("sleep 2.5 && echo slept >> kept.txt"),
        call("submit", summary="done")])
    summary, stderr, _ = _interrupt_at(repo, model, "sleep 2.5")
    assert summary["held"] and f"tether resume {summary['run_id']}" in stderr
    assert "kept.txt" not in git(repo, "ls-tree", "--name-only", summary["branch"])  # nothing delivered yet
    resumed = tether("resume", summary["run_id"], "--json", cwd=repo)
    assert resumed.returncode == 0, resumed.stderr
    done = json.loads(resumed.stdout)
    assert done["status"] == "succeeded" and done["interrupts"] == 1
    assert git(repo, "show", f"{summary['branch']}:kept.txt") == "work\nslept\n"  # the interrupted call ran again


def test_scripted_demo_ends_with_a_branch_that_passes_its_check(tmp_path: Path):
    target = tmp_path / "demo"
    result = tether("demo", "--scripted", "--dir", str(target), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "succeeded" and summary["rework"] == 1
    assert [d["rule"] for d in summary["denials"]] == ["commands.deny"]  # the download it tried
    assert "Pling" in git(target, "show", f"{summary['branch']}:raindrops.py")
    again = tether("demo", "--scripted", "--dir", str(target), cwd=tmp_path)
    assert again.returncode == 2 and "not empty" in again.stderr


def test_version_and_doctor_on_a_bad_setup(repo: Path, tmp_path: Path):
    version = tether("--version", cwd=repo)
    assert version.returncode == 0 and version.stdout.startswith("tether 0.")
    (repo / "tether.toml").write_text('[environment]\nsetup = ["exit 3"]\n' + CHECK)
    doctor = tether("doctor", cwd=repo)
    assert doctor.returncode == 1
    assert "FAIL environment" in doctor.stdout and "exit 3" in doctor.stdout
    assert "tether/doctor-" not in git(repo, "branch")  # the throwaway worktree's branch is gone


def test_a_read_only_store_can_be_listed_shown_and_verified_but_not_written(repo: Path, tmp_path: Path):
    (repo / "tether.toml").write_text(CHECK)
    model = script(tmp_path / "t.json", [call("write_file", path="raindrops.py", content=FIX),
                                         call("submit", summary="fixed")])
    run_id = json.loads(tether("run", "fix", "--model", model, "--json", cwd=repo).stdout)["run_id"]
    store = repo / ".tether"
    read_only = ["bwrap", "--bind", "/", "/", "--ro-bind", str(store), str(store), "--dev", "/dev", "--proc", "/proc",
                 *TETHER]
    for args, code in ((["runs"], 0), (["show", run_id[-6:]], 0), (["verify", run_id], 0),
                       (["run", "again", "--model", model], 2)):
        done = subprocess.run([*read_only, *args], cwd=repo, capture_output=True, text=True)
        assert done.returncode == code, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert "read-only" in done.stderr
