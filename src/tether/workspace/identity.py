"""Who the agent's commands run as. Never root on the host, and never the same user as another
run: when Tether itself runs as root, each sandbox switches to an unprivileged user of its own,
derived from the folder it works in (a run's worktree, an environment being built), and the files
it must write are handed to that user. Two runs therefore cannot signal, trace or reach into each
other's processes (`/proc/PID/cwd` needs the same user), nor write each other's files.

Without root there is no second user to switch to: commands run in a user namespace as Tether's
user, and runs are kept apart by their namespaces (mount, PID, IPC, network) alone."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

# Users no account on the machine has: far above the usual ranges (system users, people, the
# subordinate ids of rootless containers at 100000-165535), below 2^31.
UID_BASE = 1_900_000_000
UID_SPAN = 200_000_000


def drops_root() -> bool:
    """Whether sandboxed commands run as another user than Tether (they do when Tether is root)."""
    return os.geteuid() == 0


def sandbox_uid(folder: Path) -> int:
    """The user a sandbox working in `folder` runs as (its group has the same number): the same for
    the same folder, every time and in every process, so that a resumed run finds its files its own."""
    if not drops_root():
        return os.geteuid()
    digest = hashlib.sha256(os.path.realpath(folder).encode()).digest()
    return UID_BASE + int.from_bytes(digest[:8], "big") % UID_SPAN


def hand_over(root: Path, uid: int | None = None) -> None:
    """Make everything under `root` the sandbox user's (by default the user of a sandbox working in
    `root`), its own `.git` pointer excepted: that file is Tether's. Symlinks are changed themselves,
    never followed."""
    if not drops_root():
        return
    uid = sandbox_uid(root) if uid is None else uid
    os.lchown(root, uid, uid)
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        for name in [*dirs, *files]:
            if here == root and name == ".git":
                continue
            os.lchown(here / name, uid, uid)


def hand_over_paths(root: Path, paths: Iterable[Path]) -> None:
    """Hand the files Tether (or its git) wrote in the worktree `root`, and the folders on their way,
    to the user of the sandbox working there; a path gone since is skipped. The rest of the worktree
    is not walked: what the sandbox made is its user's already."""
    if not drops_root():
        return
    uid = sandbox_uid(root)
    done: set[Path] = set()
    for path in paths:
        if not os.path.lexists(path):
            continue
        current = path
        while current != root and current.is_relative_to(root) and current not in done:
            os.lchown(current, uid, uid)
            done.add(current)
            current = current.parent


def account_files(uid: int, state: Path) -> dict[Path, Path]:
    """Copies of /etc/passwd and /etc/group that also name `uid`, for a sandbox to see in their
    place: programs that look their user up (npm, Node's os.userInfo, getpass) find one."""
    state.mkdir(parents=True, exist_ok=True)
    made: dict[Path, Path] = {}
    for name, line in (("passwd", f"tether:x:{uid}:{uid}:Tether sandbox:/tmp:/bin/bash\n"),
                       ("group", f"tether:x:{uid}:\n")):
        system = Path("/etc") / name
        try:
            text = system.read_text()
        except OSError:
            text = ""
        target = state / f"{name}-{uid}"
        content = (text if text.endswith("\n") or not text else text + "\n") + line
        if not target.is_file() or target.read_text() != content:
            temporary = target.with_name(f".{target.name}.{os.getpid()}")
            temporary.write_text(content)
            temporary.chmod(0o644)
            os.replace(temporary, target)
        made[system] = target
    return made
