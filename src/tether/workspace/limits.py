"""Resource limits for a sandboxed command: rlimits, and cgroups where the kernel offers writable ones.

RLIMIT_NPROC does not bind uid 0 and RLIMIT_AS does not count a tmpfs, so where a pids or memory
cgroup (v1 or v2) is writable, each command gets its own, under the cgroup Tether runs in, removed
afterwards; `describe()` says which limits hold. A group is named after the process that made it,
so one left behind by a Tether killed with SIGKILL is swept by the next command."""

from __future__ import annotations

import os
import resource
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path

from tether.policy.schema import SandboxPolicy

CGROUP_ROOT = Path("/sys/fs/cgroup")
_PREFIX = "tether-"


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and under "" for the v2 hierarchy."""
    paths: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            paths[controller] = path
    return paths


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def _parents() -> dict[str, Path]:
    """Where to make a command's group, per limit ("pids", "memory")."""
    own = _own_paths()
    found: dict[str, Path] = {}
    for controller in ("pids", "memory"):
        v1 = CGROUP_ROOT / controller
        if (v1 / "cgroup.procs").exists():
            parent = v1 / own.get(controller, "/").lstrip("/")
            if _writable(parent):
                found[controller] = parent
    v2 = CGROUP_ROOT if (CGROUP_ROOT / "cgroup.controllers").exists() else CGROUP_ROOT / "unified"
    control = v2 / own.get("", "/").lstrip("/") / "cgroup.subtree_control"
    if control.exists() and _writable(control.parent):
        enabled = control.read_text().split()
        for controller in ("pids", "memory"):
            if controller in enabled and controller not in found:
                found[controller] = control.parent
    return found


def _owner_alive(name: str) -> bool:
    pid = name[len(_PREFIX):].split("-", 1)[0]
    if not pid.isdigit():
        return True  # not one of ours: leave it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep(parent: Path) -> None:
    """Remove groups whose Tether process is gone (killed before it could clean up)."""
    for group in parent.glob(f"{_PREFIX}*"):
        if not _owner_alive(group.name):
            _empty_and_remove(group)


def _empty_and_remove(group: Path) -> None:
    for _attempt in range(50):
        try:
            for pid in (group / "cgroup.procs").read_text().split():
                os.kill(int(pid), signal.SIGKILL)
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            time.sleep(0.002)


class ResourceGroup:
    """Fresh cgroups for one command (a process cap, a memory cap), removed afterwards."""

    def __init__(self, policy: SandboxPolicy):
        self.groups: dict[str, Path] = {}
        name = f"{_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        limits = {"pids": {"pids.max": str(policy.max_procs)},
                  "memory": {"memory.limit_in_bytes": str(policy.memory_mb << 20),
                             "memory.max": str(policy.memory_mb << 20)}}
        for controller, parent in _parents().items():
            _sweep(parent)
            group = parent / name
            try:
                if not group.exists():
                    group.mkdir()
                for setting, value in limits[controller].items():
                    if (group / setting).exists():
                        (group / setting).write_text(value)
                self.groups[controller] = group
            except OSError:
                continue

    @property
    def paths(self) -> set[Path]:
        return set(self.groups.values())

    def enter(self) -> None:
        for group in self.paths:
            (group / "cgroup.procs").write_text(str(os.getpid()))

    def close(self) -> None:
        """Kill whatever the command left running (background jobs too), then drop the groups."""
        for group in self.paths:
            _empty_and_remove(group)


def preexec(policy: SandboxPolicy, group: ResourceGroup) -> Callable[[], None]:
    mib = 1024 * 1024

    def apply() -> None:
        group.enter()
        if "memory" not in group.groups:
            # Only without a memory cgroup: address space is a poor proxy for memory (V8's and
            # WebAssembly's reservations alone pass any sensible bound), but it is all there is.
            resource.setrlimit(resource.RLIMIT_AS, (policy.memory_mb * mib, policy.memory_mb * mib))
        resource.setrlimit(resource.RLIMIT_CPU, (policy.cpu_s, policy.cpu_s))
        resource.setrlimit(resource.RLIMIT_FSIZE, (policy.max_file_mb * mib, policy.max_file_mb * mib))
        resource.setrlimit(resource.RLIMIT_NPROC, (policy.max_procs, policy.max_procs))

    return apply


def describe(drops_root: bool) -> dict[str, str]:
    """Which mechanism bounds each resource for this process's commands."""
    groups = _parents()
    rlimit_procs = "rlimit" if drops_root or os.geteuid() != 0 else "rlimit (not binding for root)"
    return {
        "memory": "memory cgroup" if "memory" in groups else "rlimit (address space)",
        "cpu": "rlimit", "file_size": "rlimit",
        "processes": "pids cgroup" if "pids" in groups else rlimit_procs,
    }
