"""Run one shell command for the agent: bubblewrap (read-only system, writable worktree, private
/tmp, no network, no capabilities), resource limits, a timeout and a secret-free environment."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tether.policy.schema import SandboxPolicy
from tether.workspace import limits
from tether.workspace.environment import scrub

OUTPUT_HEAD = 4_000
OUTPUT_TAIL = 12_000
_SYSTEM_DIRS = ("/usr", "/etc", "/opt")
_SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


class SandboxUnavailable(Exception):
    pass


def require_sandbox(policy: SandboxPolicy) -> None:
    if policy.mode == "bwrap" and shutil.which("bwrap") is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed, so commands cannot be sandboxed. Install it "
            "(apt-get install bubblewrap) or set [sandbox] mode = \"none\" in the policy."
        )


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str
    output_digest: str
    duration_s: float
    timed_out: bool
    truncated: bool


@dataclass
class Sandbox:
    policy: SandboxPolicy
    workdir: Path
    network: bool = False
    read_only: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        require_sandbox(self.policy)
        self.env, self.dropped_env = _sandbox_env()
        self._bwrap_prefix = self._bwrap_args() if self.policy.mode == "bwrap" else []

    def describe(self) -> dict[str, object]:
        return {
            "mode": self.policy.mode,
            "network": self.network,
            "memory_mb": self.policy.memory_mb,
            "cpu_s": self.policy.cpu_s,
            "max_procs": self.policy.max_procs,
            "env_dropped": self.dropped_env,
        }

    def argv(self, command: str) -> list[str]:
        shell = ["/bin/bash", "-c", command]
        if self.policy.mode == "none":
            return shell
        return [*self._bwrap_prefix, *shell]

    def _bwrap_args(self) -> list[str]:
        args = ["bwrap", "--die-with-parent", "--new-session", "--unshare-all", "--cap-drop", "ALL"]
        if self.network:
            args.append("--share-net")
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        bound: list[Path] = []
        for path in _SYSTEM_LINKS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
                bound.append(Path(path))
        for path in [*map(Path, _SYSTEM_DIRS), *_toolchain_dirs(), *map(Path, self.policy.ro_paths),
                     *self.read_only]:
            resolved = path.resolve()
            if resolved.is_dir() and not any(resolved.is_relative_to(b) for b in bound):
                args += ["--ro-bind", str(resolved), str(resolved)]
                bound.append(resolved)
        workdir = str(self.workdir.resolve())
        return [*args, "--bind", workdir, workdir, "--chdir", workdir, "--"]

    def run(self, command: str, timeout_s: float) -> ExecResult:
        cap = limits.ProcessCap(self.policy.max_procs)
        started = time.perf_counter()
        try:
            with tempfile.TemporaryFile() as sink:
                process = subprocess.Popen(
                    self.argv(command), cwd=self.workdir, env=self.env, stdin=subprocess.DEVNULL,
                    stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=limits.preexec(self.policy, cap),
                )
                # A timer rather than wait(timeout=...): the latter polls and adds milliseconds.
                expired = threading.Event()
                timer = threading.Timer(timeout_s, lambda: (expired.set(), _kill_group(process)))
                timer.start()
                try:
                    exit_code = process.wait()
                except BaseException:  # interrupted (Ctrl-C): the command must not outlive us
                    _kill_group(process)
                    process.wait()
                    raise
                finally:
                    timer.cancel()
                timed_out = expired.is_set()
                duration = time.perf_counter() - started
                output, digest, truncated = _read_output(sink)
        finally:
            cap.close()
        if timed_out:
            output += f"\n[tether: command timed out after {timeout_s:g}s and was killed]"
        return ExecResult(exit_code, output, digest, duration, timed_out, truncated)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _read_output(sink: tempfile._TemporaryFileWrapper) -> tuple[str, str, bool]:  # type: ignore[type-arg]
    """Digest of the whole output; text of its head and tail (the middle of a flood is noise)."""
    sink.seek(0)
    digest = hashlib.sha256()
    head = b""
    tail = b""
    size = 0
    while chunk := sink.read(1 << 16):
        digest.update(chunk)
        size += len(chunk)
        if len(head) < OUTPUT_HEAD:
            head += chunk[: OUTPUT_HEAD - len(head)]
        tail = (tail + chunk)[-OUTPUT_TAIL:]
    truncated = size > OUTPUT_HEAD + OUTPUT_TAIL
    if truncated:
        text = (head.decode("utf-8", "replace")
                + f"\n[... {size - OUTPUT_HEAD - OUTPUT_TAIL} bytes omitted ...]\n"
                + tail.decode("utf-8", "replace"))
    else:
        sink.seek(0)
        text = sink.read().decode("utf-8", "replace")
    return text, digest.hexdigest(), truncated


def _toolchain_dirs() -> list[Path]:
    """The running interpreter's prefixes and the caller's PATH, so `python` and friends exist."""
    dirs = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).parent}
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry and os.path.isabs(entry):
            dirs.add(Path(entry))
    return sorted(dirs)


def _sandbox_env() -> tuple[dict[str, str], list[str]]:
    env, dropped = scrub(os.environ)
    env.update({
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")]),
        # The worktree's files belong to the caller; git must not call that dubious ownership.
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "safe.directory",
        "GIT_CONFIG_VALUE_0": "*",
    })
    return env, dropped


def worktree_sandbox(policy: SandboxPolicy, network: bool, worktree: Path, repo: Path) -> Sandbox:
    """The sandbox of one worktree: it writes there; the repository's git store is read-only."""
    return Sandbox(policy, worktree, network=network, read_only=[repo / ".git"])
