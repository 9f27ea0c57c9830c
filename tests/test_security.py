"""The adversarial battery, end to end: each attack is made by a scripted agent through `tether run`
(real git, real bubblewrap) and checked from outside the sandbox. Where an attack's payload could
be doubted, a control runs the same payload without Tether and shows that it works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import CHECK, FIX, bash, call, git, payloads, run_scripted
from tether.ledger import Ledger
from tether.redact import secret_values
from tether.workspace.identity import drops_root, sandbox_uid

SUBMIT = call("submit", summary="done")
MODE_NONE = '[sandbox]\nmode = "none"\n'


def all_event_text(ledger: Ledger, run_id: str) -> str:
    return "\n".join(event.payload_json for event in ledger.events(run_id))


def fsmonitor_payload(marker: Path, pointer: bool = True) -> str:
    """Make a git dir whose fsmonitor hook writes `marker` and dumps the environment, and (with
    `pointer`) point the worktree's .git file at it."""
    script = textwrap.dedent(f"""\
        mkdir -p evil && git init -q evil
        printf '#!/bin/sh\\nenv > {marker}\\n' > evil/hook.sh && chmod +x evil/hook.sh
        git -C evil config core.fsmonitor "$PWD/evil/hook.sh"
        """)
    if pointer:
        script += 'printf "gitdir: %s\\n" "$PWD/evil/.git" > .git\n'
    return script


# 1 and 2: Tether's own git never follows the worktree's .git pointer ---------------------------

def test_control_fsmonitor_payload_runs_code_through_a_plain_git_add(repo: Path, tmp_path: Path):
    marker = tmp_path / "control-pwned"
    plain = tmp_path / "plain-worktree"
    git(repo, "worktree", "add", "-q", str(plain))
    subprocess.run(["bash", "-c", fsmonitor_payload(marker)], cwd=plain, check=True, capture_output=True)
    subprocess.run(["git", "add", "-A"], cwd=plain, capture_output=True)
    assert marker.exists()  # the attack is real


@pytest.mark.parametrize("policy", ["", MODE_NONE], ids=["bwrap", "none"])
def test_git_pointer_attack_runs_nothing_outside_the_sandbox(ledger: Ledger, repo: Path, tmp_path: Path,
                                                             policy: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-shouldneverleak0123456789abcdef")
    marker = tmp_path / "pwned"
    summary = run_scripted(ledger, repo, tmp_path, [bash(fsmonitor_payload(marker)), bash("true"), SUBMIT], policy)
    assert not marker.exists()
    assert "sk-proj-shouldneverleak" not in all_event_text(ledger, summary["run_id"])
    if policy:  # no sandbox: the pointer was rewritten, put back, and the run stopped with the reason
        assert summary["status"] == "stopped"
        decisions = payloads(ledger, summary["run_id"], "policy_decision")
        assert decisions[-1]["rule"] == "workspace.git_pointer"
    else:  # bwrap: the pointer is read-only, the rewrite failed inside the sandbox
        first = payloads(ledger, summary["run_id"], "tool_result")[0]
        assert "Read-only file system" in first["observation"] or "Permission denied" in first["observation"]
        assert summary["status"] == "succeeded"


@pytest.mark.parametrize("policy", ["", MODE_NONE], ids=["bwrap", "none"])
def test_nested_repository_config_is_never_run(ledger: Ledger, repo: Path, tmp_path: Path, policy: str):
    marker = tmp_path / "pwned-nested"
    summary = run_scripted(ledger, repo, tmp_path, [bash(fsmonitor_payload(marker, pointer=False) + "ls evil"),
                                                    SUBMIT], policy)
    assert summary["status"] == "succeeded"
    assert "hook.sh" in payloads(ledger, summary["run_id"], "tool_result")[0]["observation"]  # the payload ran
    assert not marker.exists()


def test_pointer_to_the_users_git_dir_never_touches_the_users_index(ledger: Ledger, repo: Path, tmp_path: Path):
    (repo / "raindrops.py").write_text("# staged by the user\n")
    git(repo, "add", "raindrops.py")
    index_before = git(repo, "ls-files", "-s")
    status_before = git(repo, "status", "--porcelain")
    attack = f'echo agent > planted.txt && printf "gitdir: %s\\n" "{repo / ".git"}" > .git'
    summary = run_scripted(ledger, repo, tmp_path, [bash(attack), bash("true"), SUBMIT], MODE_NONE)
    assert summary["status"] == "stopped"
    assert git(repo, "ls-files", "-s") == index_before
    assert git(repo, "status", "--porcelain") == status_before
    assert "planted.txt" not in git(repo, "ls-files")


def test_repository_git_store_is_read_only_in_the_sandbox(ledger: Ledger, repo: Path, tmp_path: Path):
    config_before = (repo / ".git" / "config").read_text()
    head_before = git(repo, "rev-parse", "HEAD")
    attack = (f"echo '[core]' >> {repo}/.git/config; git update-ref refs/heads/main HEAD~0 2>&1; "
              f"echo x > {repo}/.git/hooks/pre-commit; echo attempted")
    summary = run_scripted(ledger, repo, tmp_path, [bash(attack), SUBMIT])
    output = payloads(ledger, summary["run_id"], "tool_result")[0]["observation"]
    assert "attempted" in output and "Read-only file system" in output  # it ran, and was refused
    assert (repo / ".git" / "config").read_text() == config_before
    assert git(repo, "rev-parse", "HEAD") == head_before
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()


# 3: never root on the host ---------------------------------------------------------------------

@pytest.mark.skipif(os.geteuid() != 0, reason="the host-settings attack needs Tether to run as root")
def test_sandbox_is_never_root_and_cannot_change_host_settings(ledger: Ledger, repo: Path, tmp_path: Path):
    sysctl = Path("/proc/sys/kernel/printk_ratelimit")
    before = sysctl.read_text()
    changed = str(int(before) + 1)
    core_pattern = Path("/proc/sys/kernel/core_pattern").read_text()
    attack = (f"id -u; echo {changed} > {sysctl}; echo '|/tmp/evil %p' > /proc/sys/kernel/core_pattern; "
              "echo b > /proc/sysrq-trigger; cat /proc/self/status | grep -E '^(Cap|NoNewPrivs)'")
    summary = run_scripted(ledger, repo, tmp_path, [bash(attack), SUBMIT])
    output = payloads(ledger, summary["run_id"], "tool_result")[0]["observation"]
    worktree = payloads(ledger, summary["run_id"], "run_started")[0]["worktree"]
    assert output.splitlines()[1] == str(sandbox_uid(Path(worktree))) != "0"  # the run's own user
    assert "CapEff:\t0000000000000000" in output and "NoNewPrivs:\t1" in output
    assert sysctl.read_text() == before
    assert Path("/proc/sys/kernel/core_pattern").read_text() == core_pattern
    # control: the same write outside the sandbox is accepted (the current value, so nothing changes)
    sysctl.write_text(before)


# 4: checks cannot write what the agent may not: they run on a clean export of the tree ------------

CONFTEST = textwrap.dedent("""\
    import pathlib
    pathlib.Path("secure/keys.txt").write_text("written by the check\\n")
    pathlib.Path("secure/new_module.py").write_text("x = 1\\n")
    pathlib.Path("tether.toml").write_text("# the agent's own policy\\n")
    pathlib.Path("raindrops.py").write_text(pathlib.Path("raindrops.py").read_text() + "# check\\n")
    """)
PROTECTED = '[ownership.protected]\n"secure/" = ["@alice"]\n'


@pytest.mark.parametrize("after_write", [False, True], ids=["on-submit", "after-write"])
def test_required_check_cannot_deliver_protected_paths(ledger: Ledger, repo: Path, tmp_path: Path, after_write: bool):
    (repo / "secure").mkdir()
    (repo / "secure" / "keys.txt").write_text("original\n")
    (repo / "tether.toml").write_text("# the team's policy\n")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=d@e", "-c", "user.name=D", "commit", "-qm", "protected")
    policy = CHECK + PROTECTED + ("[agent]\ncheck_after_write = true\n" if after_write else "")
    turns = [call("write_file", path="conftest.py", content=CONFTEST), call("write_file", path="raindrops.py",
                                                                            content=FIX), SUBMIT]
    summary = run_scripted(ledger, repo, tmp_path, turns, policy)
    assert summary["status"] == "succeeded", summary
    branch = summary["branch"]
    assert git(repo, "show", f"{branch}:secure/keys.txt") == "original\n"
    assert "secure/new_module.py" not in git(repo, "ls-tree", "-r", "--name-only", branch)
    assert git(repo, "show", f"{branch}:tether.toml") == "# the team's policy\n"
    assert not git(repo, "show", f"{branch}:raindrops.py").endswith("# check\n")
    # the conftest did run, and wrote, in the check's own copy of the tree
    assert payloads(ledger, summary["run_id"], "check_finished")[-1]["passed"]
    assert not summary["denials"]


def test_a_check_that_rewrites_the_git_pointer_touches_only_its_copy(ledger: Ledger, repo: Path, tmp_path: Path):
    marker = tmp_path / "pwned-by-check"
    evil = textwrap.dedent(f"""\
        import subprocess
        subprocess.run({fsmonitor_payload(marker)!r}, shell=True, check=True)
        """)
    policy = CHECK + MODE_NONE
    summary = run_scripted(ledger, repo, tmp_path, [call("write_file", path="conftest.py", content=evil),
                                                    call("write_file", path="raindrops.py", content=FIX),
                                                    SUBMIT], policy)
    assert summary["status"] == "succeeded" and not summary["denials"]
    assert not marker.exists()
    files = git(repo, "ls-tree", "--name-only", summary["branch"])
    assert "conftest.py" in files and "evil" not in files


def test_agent_cannot_change_the_policy_file_or_codeowners(ledger: Ledger, repo: Path, tmp_path: Path):
    turns = [call("write_file", path="tether.toml", content="[budget]\nmax_steps = 1000\n"),
             bash("echo '* @agent' > CODEOWNERS"), SUBMIT]
    summary = run_scripted(ledger, repo, tmp_path, turns)
    rules = [d["rule"] for d in payloads(ledger, summary["run_id"], "policy_decision")]
    assert rules == ["writes.policy", "writes.policy"]
    files = git(repo, "ls-tree", "-r", "--name-only", summary["branch"])
    assert "tether.toml" not in files and "CODEOWNERS" not in files


def test_ignored_files_under_protected_paths_are_rolled_back(ledger: Ledger, repo: Path, tmp_path: Path):
    (repo / ".gitignore").write_text("*.log\n")
    (repo / "secure").mkdir()
    (repo / "secure" / "keys.txt").write_text("original\n")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=d@e", "-c", "user.name=D", "commit", "-qm", "protected")
    turns = [bash("mkdir -p secure/__pycache__ && echo forged > secure/__pycache__/keys.cpython-311.pyc"),
             bash("echo leak > secure/debug.log"), bash("echo fine > debug.log"),
             bash("ls secure/__pycache__/keys.cpython-311.pyc secure/debug.log debug.log 2>&1"), SUBMIT]
    summary = run_scripted(ledger, repo, tmp_path, turns, PROTECTED)
    listing = payloads(ledger, summary["run_id"], "tool_result")[3]["observation"]
    assert "cannot access 'secure/__pycache__/keys.cpython-311.pyc'" in listing
    assert "cannot access 'secure/debug.log'" in listing
    assert "\ndebug.log" in listing  # not protected: an ignored file may live there
    decisions = payloads(ledger, summary["run_id"], "policy_decision")
    assert [d["rule"] for d in decisions] == ["ownership.protected", "ownership.protected"]
    assert all(d["rolled_back"] for d in decisions)


# 5: files that are not files ----------------------------------------------------------------------

def test_fifo_device_and_huge_files_do_not_hang_or_flood(ledger: Ledger, repo: Path, tmp_path: Path):
    turns = [bash("mkfifo pipe && truncate -s 90M huge.bin && ln -s /dev/zero zero"),
             call("read_file", path="pipe"), call("write_file", path="pipe", content="x"),
             call("edit_file", path="pipe", old="a", new="b"), call("read_file", path="huge.bin"),
             call("edit_file", path="huge.bin", old="a", new="b"), call("read_file", path="zero"),
             bash("rm pipe huge.bin zero"), SUBMIT]
    started = time.monotonic()
    summary = run_scripted(ledger, repo, tmp_path, turns, "[budget]\nmax_wall_s = 60\n")
    assert time.monotonic() - started < 30
    assert summary["status"] == "succeeded"
    results = payloads(ledger, summary["run_id"], "tool_result")
    assert "named pipe" in results[1]["observation"]
    assert "named pipe" in results[2]["observation"] and "named pipe" in results[3]["observation"]
    assert "truncated" in results[4]["observation"] and len(results[4]["observation"]) < 120_000
    assert "larger than" in results[5]["observation"]
    assert "outside the worktree" in results[6]["observation"]


# 6: secrets ----------------------------------------------------------------------------------------

def test_secrets_never_reach_the_sandbox_or_the_record(ledger: Ledger, repo: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch):
    secrets = {"GH_PAT": "github_pat_11AAAAAAA0abcdefghijklmnopqrstuvwxyz0123",
               "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0ABC/B0DEF/abcdefghij123456",
               "MY_SERVICE_PASSWORD": "correct-horse-battery", "PLAIN_SETTING": "not-a-secret-but-not-passed"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    git(repo, "remote", "add", "origin", "https://bob:ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/o/r.git")
    git(repo, "config", "http.extraHeader", "Authorization: Bearer s3cr3t-header-token-value")
    leak = ("env; git config --list; git remote -v; cat $(git rev-parse --git-common-dir)/config; "
            "echo ghp_abcdefghijklmnopqrstuvwxyz0123456789 > found.txt")
    summary = run_scripted(ledger, repo, tmp_path, [bash(leak), SUBMIT])
    output = payloads(ledger, summary["run_id"], "tool_result")[0]["observation"]
    record = all_event_text(ledger, summary["run_id"])
    for value in [*secrets.values(), "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "s3cr3t-header-token-value"]:
        assert value not in output, value
    for value in [*list(secrets.values())[:3], "ghp_abcdefghijklmnopqrstuvwxyz0123456789"]:
        assert value not in record, value
    assert "repositoryformatversion" in output  # git's config is there, without what it must not show
    assert "[masked]" in record


def test_a_secret_in_the_task_itself_is_masked_in_the_store(ledger: Ledger, repo: Path, tmp_path: Path):
    from tests.conftest import parse_policy_text, script
    from tether.runner import RunSpec, start_run

    token = "ghp_" + "Z" * 36
    model = script(tmp_path / "t.json", [SUBMIT])
    summary = start_run(ledger, RunSpec(f"deploy with {token}", repo, parse_policy_text(""), model=model))
    assert token not in ledger.get_run(summary["run_id"]).instruction
    assert token not in all_event_text(ledger, summary["run_id"])


def test_secret_printed_by_a_repository_file_is_masked_in_the_record(ledger: Ledger, repo: Path, tmp_path: Path):
    token = "xoxb-123456789012-1234567890123-abcdefghijklmnopqrstuvwx"
    (repo / "settings.ini").write_text(f"slack = {token}\nkey = AKIAIOSFODNN7EXAMPLE\n")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=d@e", "-c", "user.name=D", "commit", "-qm", "settings")
    summary = run_scripted(ledger, repo, tmp_path, [bash("cat settings.ini"), call("read_file", path="settings.ini"),
                                                    SUBMIT])
    record = all_event_text(ledger, summary["run_id"])
    assert token not in record and "AKIAIOSFODNN7EXAMPLE" not in record
    assert ledger.verify(summary["run_id"]).ok


def test_key_files_and_env_files_of_a_repository_are_masked_whole_in_the_record(
        ledger: Ledger, repo: Path, tmp_path: Path):
    body = "MIIEowIBAAKCAQEA7bq9xPl2kqGJ0yVcJx1nV2Z4l5fQ8hY3"
    key = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\n"
    (repo / "deploy_key").write_text(key)
    (repo / "app.env").write_text("DB_PASSWORD=Xy7#kLm9$qRt2\nDEBUG=1\n")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=d@e", "-c", "user.name=D", "commit", "-qm", "deploy settings")
    summary = run_scripted(ledger, repo, tmp_path, [bash("cat deploy_key app.env | base64 -w0 | base64 -d"),
                                                    call("read_file", path="deploy_key"), SUBMIT])
    record = all_event_text(ledger, summary["run_id"])
    assert body not in record and "Xy7#kLm9" not in record
    assert "DEBUG=1" in record  # the rest of the file is there
    assert ledger.verify(summary["run_id"]).ok


# 7: a denied command is never executed -------------------------------------------------------------

def test_denied_commands_never_run(ledger: Ledger, repo: Path, tmp_path: Path):
    policy = '[commands]\ndeny = ["rm", "git push", "curl"]\n'
    attacks = ["$(echo rm) raindrops.py", "echo cm0gcmFpbmRyb3BzLnB5 | base64 -d | sh",
               "find . -name raindrops.py -delete", "python3 -c \"import os; os.remove('raindrops.py')\"",
               "unlink raindrops.py", "x=rm; $x raindrops.py"]
    summary = run_scripted(ledger, repo, tmp_path, [bash(a) for a in attacks] + [SUBMIT], policy)
    assert "raindrops.py" in git(repo, "ls-tree", "--name-only", summary["branch"])
    decisions = payloads(ledger, summary["run_id"], "policy_decision")
    assert len(decisions) == len(attacks) and all(d["verdict"] == "deny" for d in decisions)
    assert all(not r["executed"] for r in payloads(ledger, summary["run_id"], "tool_result")[:len(attacks)])


@pytest.mark.parametrize("attack", [
    "cp /usr/bin/rm /tmp/x && /tmp/x raindrops.py", "r\\\nm raindrops.py",
    "python3 <<< \"import os; os.remove('raindrops.py')\"", "mapfile -t -C rm -c 1 a <<< raindrops.py",
    "git --config-env=alias.x=X x", "git -c core.sshCommand='rm raindrops.py #' ls-remote ssh://h/r"])
def test_later_ways_around_a_deny_rule_work_without_it_and_are_refused_with_it(
        ledger: Ledger, repo: Path, tmp_path: Path, attack: str):
    if "alias" in attack:
        attack = "X='!rm raindrops.py' " + attack
    control = run_scripted(ledger, repo, tmp_path, [bash(attack), SUBMIT], "")
    assert "raindrops.py" not in git(repo, "ls-tree", "--name-only", control["branch"])
    summary = run_scripted(ledger, repo, tmp_path, [bash(attack), SUBMIT],
                           '[commands]\ndeny = ["rm", "git push", "curl"]\n')
    assert "raindrops.py" in git(repo, "ls-tree", "--name-only", summary["branch"])
    decision = payloads(ledger, summary["run_id"], "policy_decision")[0]
    assert decision["verdict"] == "deny" and decision["rule"] == "commands.deny", decision


# 8: resource limits and bad input --------------------------------------------------------------------

def test_bytes_written_per_step_are_capped_and_rolled_back(ledger: Ledger, repo: Path, tmp_path: Path):
    flood = "for i in $(seq 12); do head -c 4M /dev/urandom > flood$i.bin; done; sleep 1; echo done"
    policy = "[sandbox]\nmax_step_write_mb = 16\nmax_file_mb = 8\n"
    summary = run_scripted(ledger, repo, tmp_path, [bash(flood), bash("ls flood* 2>&1 | head -3"), SUBMIT], policy)
    assert "No such file" in payloads(ledger, summary["run_id"], "tool_result")[1]["observation"]
    decision = payloads(ledger, summary["run_id"], "policy_decision")[0]
    assert decision["rule"] == "sandbox.max_step_write_mb" and decision["rolled_back"]


def test_private_tmp_has_a_size(ledger: Ledger, repo: Path, tmp_path: Path):
    summary = run_scripted(ledger, repo, tmp_path, [bash("head -c 100M /dev/zero > /tmp/big; ls -la /tmp/big"),
                                                    SUBMIT], "[sandbox]\ntmp_mb = 32\n")
    output = payloads(ledger, summary["run_id"], "tool_result")[0]["observation"]
    assert "No space left on device" in output


def test_nul_byte_in_a_command_is_refused_and_the_run_goes_on(ledger: Ledger, repo: Path, tmp_path: Path):
    summary = run_scripted(ledger, repo, tmp_path, [bash("echo a\0b"), bash("echo after"), SUBMIT])
    assert summary["status"] == "succeeded"
    decision = payloads(ledger, summary["run_id"], "policy_decision")[0]
    assert decision["rule"] == "commands.invalid" and "NUL" in decision["reason"]
    assert "after" in payloads(ledger, summary["run_id"], "tool_result")[1]["observation"]


def test_nul_byte_is_refused_on_postgres_too(postgres_url: str, repo: Path, tmp_path: Path):
    store = Ledger(postgres_url)
    try:
        summary = run_scripted(store, repo, tmp_path, [bash("echo a\0b"), call("write_file", path="n.txt",
                                                                                content="a\0b"), SUBMIT])
        assert summary["status"] == "succeeded"
        assert store.verify(summary["run_id"]).ok
    finally:
        store.close()


@pytest.mark.skipif(not drops_root(), reason="cgroups are only writable by root here")
def test_a_killed_tether_leaves_no_cgroup_behind(tmp_path: Path):
    driver = textwrap.dedent(f"""\
        from pathlib import Path
        from tether.policy.schema import SandboxPolicy
        from tether.workspace.sandbox import Sandbox
        Sandbox(SandboxPolicy(), Path({str(tmp_path)!r})).run("sleep 30", 60)
        """)
    process = subprocess.Popen([sys.executable, "-c", driver])
    pattern = f"tether-{process.pid}-*"
    roots = [p for p in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup/memory")) if p.is_dir()]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(list(r.rglob(pattern)) for r in roots):
        time.sleep(0.1)
    assert any(list(r.rglob(pattern)) for r in roots), "the command's cgroup was never made"
    process.send_signal(signal.SIGKILL)
    process.wait()
    from tether.policy.schema import SandboxPolicy
    from tether.workspace.sandbox import Sandbox
    Sandbox(SandboxPolicy(), tmp_path).run("true", 10)  # the next command sweeps what the dead one left
    assert not any(list(r.rglob(pattern)) for r in roots)


def test_tethers_settings_are_masked_as_secrets_except_the_mirror_folder():
    found = secret_values({"TETHER_DB": "postgresql://u:hunter2hunter2@db/x", "TETHER_MIRRORS": "/var/cache/mirrors",
                           "HOME": "/home/worker"})
    assert found == ["postgresql://u:hunter2hunter2@db/x"]
