"""Reading and writing the agent's files from outside the sandbox, where the agent may have left a
FIFO, a device or a huge file: only regular files, never blocking, never more than a limit, never
through a symlink swapped in after the path was checked."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from tether.workspace.identity import hand_over_paths

_OPEN_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class NotAFile(OSError):
    """The path names something other than a regular file."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "not a regular file"


def _require_regular(fd: int) -> os.stat_result:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise NotAFile(f"it is {_kind(info.st_mode)}, not a regular file")
    return info


def read_regular(path: Path, limit: int) -> tuple[bytes, int]:
    """(at most `limit` bytes of the file, its whole size)."""
    try:
        fd = os.open(path, os.O_RDONLY | _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the last component is a symlink
            raise NotAFile("it is a symlink") from exc
        raise
    try:
        return _read(fd, _require_regular(fd), limit)
    finally:
        os.close(fd)


def _read(fd: int, info: os.stat_result, limit: int) -> tuple[bytes, int]:
    chunks, remaining = [], limit
    while remaining > 0 and (chunk := os.read(fd, min(remaining, 1 << 20))):
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks), info.st_size


def look_beneath(root: Path, relative: str, limit: int) -> tuple[os.stat_result, bytes] | None:
    """What is at `relative` under `root`, without following a symlink anywhere on the way: (its
    lstat, and a regular file's first `limit` bytes or a symlink's target, else nothing), or None
    when nothing is there or something on the way is not a folder (a path beyond a symlink is gone,
    to git as to Tether)."""
    *folders, name = relative.split("/")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for folder in folders:
            try:
                inner = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | _OPEN_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    return None
                raise
            os.close(fd)
            fd = inner
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(info.st_mode):
            return info, os.readlink(os.fsencode(name), dir_fd=fd)
        if not stat.S_ISREG(info.st_mode):
            return info, b""
        file = os.open(name, os.O_RDONLY | _OPEN_FLAGS, dir_fd=fd)
        try:
            opened = _require_regular(file)  # what was opened decides, not what the lstat saw
            return opened, _read(file, opened, limit)[0]
        finally:
            os.close(file)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """All of `data` to `fd` (a write may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_regular(root: Path, path: Path, data: bytes) -> None:
    """Create or replace a regular file's content; parents are created; the sandbox user owns them."""
    with contextlib.suppress(FileNotFoundError):
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            raise NotAFile(f"it is {_kind(info.st_mode)}, not a regular file")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | _OPEN_FLAGS, 0o644)
    try:
        _require_regular(fd)
        os.ftruncate(fd, 0)
        write_all(fd, data)
    finally:
        os.close(fd)
    hand_over_paths(root, [path])
