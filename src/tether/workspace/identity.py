"""Who the agent's commands run as. Never root on the host: when Tether itself runs as root, the
sandbox switches to an unprivileged user (nobody), and the files it must write are handed to it."""

from __future__ import annotations

import os
from pathlib import Path

SANDBOX_UID = 65534  # nobody
SANDBOX_GID = 65534  # nogroup


def drops_root() -> bool:
    """Whether sandboxed commands run as another user than Tether (they do when Tether is root)."""
    return os.geteuid() == 0


def hand_over(root: Path) -> None:
    """Make everything under `root` the sandbox user's (its own `.git` pointer excepted: that file
    is Tether's). Symlinks are changed themselves, never followed."""
    if not drops_root():
        return
    os.lchown(root, SANDBOX_UID, SANDBOX_GID)
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        for name in [*dirs, *files]:
            if here == root and name == ".git":
                continue
            os.lchown(here / name, SANDBOX_UID, SANDBOX_GID)


def hand_over_path(root: Path, path: Path) -> None:
    """Hand one file Tether wrote, and the folders it created for it, to the sandbox user."""
    if not drops_root():
        return
    current = path
    while current != root and current.is_relative_to(root):
        os.lchown(current, SANDBOX_UID, SANDBOX_GID)
        current = current.parent
