"""Sandboxed commands under real bubblewrap: what they can and cannot reach."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from tether.policy.schema import SandboxPolicy
from tether.workspace.environment import scrub
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
    sandbox(workdir).run(f"echo x > {marker}", 10)
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
    box = sandbox(workdir)
    result = box.run("env", 10)
    assert "sk-should-not-leak" not in result.output and "hunter2" not in result.output
    assert "pw@host" not in result.output
    assert "HARMLESS_SETTING=visible" in result.output
    assert {"OPENAI_API_KEY", "DATABASE_URL", "MIRROR"} <= set(box.describe()["env_dropped"])


def test_scrub_patterns():
    kept, dropped = scrub({"GITHUB_TOKEN": "x", "AWS_REGION": "eu", "my_password": "p", "PATH": "/bin",
                           "SSH_AUTH_SOCK": "/s", "LANG": "C"})
    assert set(dropped) == {"GITHUB_TOKEN", "AWS_REGION", "my_password", "SSH_AUTH_SOCK"}
    assert kept == {"PATH": "/bin", "LANG": "C"}


def test_timeout_kills_the_whole_command(workdir: Path):
    result = sandbox(workdir).run("(sleep 30; echo late > late.txt) & sleep 30", 1)
    assert result.timed_out and result.duration_s < 5
    assert "timed out after 1s" in result.output
    assert not (workdir / "late.txt").exists()


def test_process_limit(workdir: Path):
    result = sandbox(workdir, max_procs=20).run("for i in $(seq 60); do sleep 5 & done; wait", 20)
    assert "fork" in result.output or "Resource temporarily unavailable" in result.output


def test_memory_limit(workdir: Path):
    result = sandbox(workdir, memory_mb=200).run("python -c \"x = bytearray(500 * 1024 * 1024)\"", 20)
    assert result.exit_code != 0 and "MemoryError" in result.output


def test_output_is_bounded_and_digested(workdir: Path):
    result = sandbox(workdir).run("yes abc | head -c 1000000", 10)
    assert result.truncated and len(result.output) < 20_000
    assert "bytes omitted" in result.output
    again = sandbox(workdir).run("yes abc | head -c 1000000", 10)
    assert again.output_digest == result.output_digest


def test_unsandboxed_mode_still_scrubs_and_times_out(workdir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SOME_TOKEN", "tok-123")
    box = sandbox(workdir, mode="none")
    assert "tok-123" not in box.run("env", 10).output
    assert box.run("sleep 10", 1).timed_out


def test_missing_bwrap_is_refused(workdir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(workdir))
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        sandbox(workdir)
