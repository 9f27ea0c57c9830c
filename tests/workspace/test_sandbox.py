"""Sandboxed commands under real bubblewrap: what they can and cannot reach."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from tether.policy.schema import SandboxPolicy
from tether.workspace import limits
from tether.workspace.environment import sandbox_environment
from tether.workspace.identity import sandbox_uid
from tether.workspace.sandbox import Sandbox, SandboxUnavailable


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "wt"
    path.mkdir()
    (path / "file.txt").write_text("inside\n")
    return path


def sandbox(workdir: Path, **policy) -> Sandbox:
    return Sandbox(SandboxPolicy(**policy), workdir)


def test_worktree_writable_system_read_only(workdir: Path):
    result = sandbox(workdir).run("echo new > made.txt && cat file.txt && touch /usr/evil", 10)
    assert (workdir / "made.txt").read_text() == "new\n"
    assert "inside" in result.output
    assert result.exit_code != 0 and "Read-only file system" in result.output
    assert not Path("/usr/evil").exists()


def test_outside_files_are_invisible(workdir: Path, tmp_path: Path):
    (tmp_path / "secret.txt").write_text("s3cret")
    result = sandbox(workdir).run(f"cat {tmp_path / 'secret.txt'}; ls /root; echo HOME=$HOME", 10)
    assert "s3cret" not in result.output
    assert "No such file" in result.output
    assert "HOME=/tmp" in result.output


def test_private_tmp(workdir: Path):
    marker = Path("/tmp") / f"tether-probe-{workdir.name}"
    result = sandbox(workdir).run(f"echo x > {marker} && cat {marker} && echo wrote-it", 10)
    assert "wrote-it" in result.output  # the command ran, and wrote its /tmp
    assert not marker.exists()


def test_no_network(workdir: Path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    threading.Thread(target=lambda: server.accept(), daemon=True).start()
    probe = (f"python -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2); "
             "print('CONNECTED')\"")
    assert "CONNECTED" not in sandbox(workdir).run(probe, 10).output
    assert "CONNECTED" in Sandbox(SandboxPolicy(), workdir, network=True).run(probe, 10).output
    server.close()


def test_secrets_are_not_in_the_sandbox_environment(workdir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:pw@host/db")
    monkeypatch.setenv("MIRROR", "https://bob:hunter2@example.com/x")
    monkeypatch.setenv("HARMLESS_SETTING", "visible")
    box = sandbox(workdir, pass_env=["HARMLESS_SETTING", "MIRROR"])
    result = box.run("env", 10)
    assert "sk-should-not-leak" not in result.output and "hunter2" not in result.output
    assert "pw@host" not in result.output
    assert "HARMLESS_SETTING=visible" in result.output  # named by the policy, and not secret
    assert {"OPENAI_API_KEY", "DATABASE_URL", "MIRROR"} <= set(box.describe()["env_dropped"])


def test_environment_is_an_allow_list():
    kept, dropped = sandbox_environment(
        {"GITHUB_TOKEN": "x", "AWS_REGION": "eu", "my_password": "p", "PATH": "/bin", "SSH_AUTH_SOCK": "/s",
         "LANG": "C", "LC_ALL": "C.UTF-8", "GH_PAT": "github_pat_11ABCDEFG0123456789abcdefghijklmnop",
         "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0001/B0001/abcdefghijkl",
         "NOT_NAMED": "harmless", "NAMED": "harmless too", "NAMED_BUT_SECRET": "ghp_" + "a" * 36},
        pass_env=["NAMED", "NAMED_BUT_SECRET", "GITHUB_TOKEN"])
    assert kept == {"PATH": "/bin", "LANG": "C", "LC_ALL": "C.UTF-8", "NAMED": "harmless too"}
    assert {"GITHUB_TOKEN", "GH_PAT", "SLACK_WEBHOOK_URL", "NAMED_BUT_SECRET", "SSH_AUTH_SOCK"} <= set(dropped)
    assert "NOT_NAMED" not in dropped  # left out, but not a secret: not worth a line in every run's record


def test_timeout_kills_the_whole_command(workdir: Path):
    result = sandbox(workdir).run("(sleep 30; echo late > late.txt) & sleep 30", 1)
    assert result.timed_out and result.duration_s < 5
    assert "timed out after 1s" in result.output
    assert not (workdir / "late.txt").exists()


def test_process_limit(workdir: Path):
    result = sandbox(workdir, max_procs=20).run("for i in $(seq 60); do sleep 5 & done; wait", 20)
    assert "fork" in result.output or "Resource temporarily unavailable" in result.output


def test_memory_limit(workdir: Path):
    command = "python3 -c \"x = bytearray(500 * 1024 * 1024); x[::4096] = b'1' * len(x[::4096]); print('kept')\""
    result = sandbox(workdir, memory_mb=200).run(command, 20)
    # a memory cgroup kills the process; without one, the address-space rlimit refuses the allocation
    assert result.exit_code != 0 and "kept" not in result.output
    assert "MemoryError" in result.output or result.exit_code in (-9, 137)


def test_output_is_bounded_and_digested(workdir: Path):
    result = sandbox(workdir).run("yes abc | head -c 1000000", 10)
    assert result.truncated and len(result.output) < 20_000
    assert "bytes omitted" in result.output
    again = sandbox(workdir).run("yes abc | head -c 1000000", 10)
    assert again.output_digest == result.output_digest


def test_unsandboxed_mode_still_scrubs_and_times_out(workdir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SOME_TOKEN", "tok-123")
    monkeypatch.setenv("GH_PAT", "tok-456")
    box = sandbox(workdir, mode="none")
    output = box.run("env", 10).output
    assert "tok-123" not in output and "tok-456" not in output
    assert box.run("sleep 10", 1).timed_out


def test_missing_bwrap_is_refused(workdir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(workdir))
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        sandbox(workdir)


@pytest.mark.skipif("memory" not in limits.describe(True)["memory"], reason="no writable memory cgroup here")
def test_memory_cgroup_counts_the_private_tmp(workdir: Path):
    # RLIMIT_AS does not see a tmpfs; the memory cgroup does, so /tmp cannot hold more than memory_mb
    box = sandbox(workdir, memory_mb=64, tmp_mb=1024)
    small = box.run("head -c 20M /dev/zero > /tmp/x; du -m /tmp/x", 30)
    assert small.exit_code == 0 and "20\t/tmp/x" in small.output  # the command runs, and /tmp holds 20 MB
    big = box.run("echo started; head -c 200M /dev/zero > /tmp/x; du -m /tmp/x", 30)
    assert "started" in big.output and big.exit_code in (137, -9), big.output  # killed by the memory cgroup


def test_commands_run_unprivileged_with_a_read_only_proc_sys(workdir: Path):
    result = sandbox(workdir).run("id -u; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; "
                                  "echo 1 > /proc/sys/vm/drop_caches", 10)
    if os.geteuid() == 0:  # Tether as root: the command is the folder's own unprivileged user
        assert result.output.splitlines()[0] == str(sandbox_uid(workdir)) != "0"
        assert "NoNewPrivs:\t1" in result.output
    assert "CapEff:\t0000000000000000" in result.output
    assert "Read-only file system" in result.output or "Permission denied" in result.output
