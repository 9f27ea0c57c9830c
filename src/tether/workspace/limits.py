"""Resource limits for a sandboxed command: rlimits, and a pids cgroup where the kernel offers one.

RLIMIT_NPROC does not bind uid 0 (the kernel exempts root), so when Tether runs as root the
process cap comes from a pids cgroup (v1 or v2) if one is writable; `describe()` says which."""

from __future__ import annotations

import os
import resource
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path

from tether.policy.schema import SandboxPolicy


def _pids_cgroup_root() -> Path | None:
    v1 = Path("/sys/fs/cgroup/pids")
    if (v1 / "cgroup.procs").exists() and os.access(v1, os.W_OK):
        return v1
    v2 = Path("/sys/fs/cgroup")
    control = v2 / "cgroup.subtree_control"
    if control.exists() and "pids" in control.read_text().split() and os.access(v2, os.W_OK):
        return v2
    return None


class ProcessCap:
    """A fresh pids cgroup for one command, removed afterwards."""

    def __init__(self, max_procs: int):
        self.path: Path | None = None
        root = _pids_cgroup_root()
        if root is None:
            return
        try:
            path = root / f"tether-{secrets.token_hex(4)}"
            path.mkdir()
            (path / "pids.max").write_text(str(max_procs))
            self.path = path
        except OSError:
            self.path = None

    def enter(self) -> None:
        if self.path is not None:
            (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def close(self) -> None:
        """Kill whatever the command left running (background jobs too), then drop the group."""
        if self.path is None:
            return
        for _attempt in range(50):
            try:
                pids = [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                self.path.rmdir()
                return
            except (OSError, ValueError):
                time.sleep(0.002)


def preexec(policy: SandboxPolicy, cap: ProcessCap) -> Callable[[], None]:
    mib = 1024 * 1024

    def apply() -> None:
        cap.enter()
        resource.setrlimit(resource.RLIMIT_AS, (policy.memory_mb * mib, policy.memory_mb * mib))
        resource.setrlimit(resource.RLIMIT_CPU, (policy.cpu_s, policy.cpu_s))
        resource.setrlimit(resource.RLIMIT_FSIZE, (policy.max_file_mb * mib, policy.max_file_mb * mib))
        resource.setrlimit(resource.RLIMIT_NPROC, (policy.max_procs, policy.max_procs))

    return apply


def describe(cap: ProcessCap) -> dict[str, str]:
    processes = "pids cgroup" if cap.path is not None else (
        "rlimit (not binding for root)" if os.geteuid() == 0 else "rlimit")
    return {"memory": "rlimit", "cpu": "rlimit", "file_size": "rlimit", "processes": processes}
