"""A tree put back into a worktree in-process: only the paths where it differs from the worktree's
last snapshot are removed or written, each through folders opened one by one without following a
link, so that a rollback costs what it changes, not what the repository holds.

Only for plain files and links (the caller has checked that git would write the blob's bytes as
they are); a submodule, a folder where a file goes, or anything else unexpected raises Unsure and
the caller lets git check the tree out. What was written before that is returned all the same."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from tether.workspace.files import write_all
from tether.workspace.git import NO_INDEX, blob_contents, git_bytes
from tether.workspace.objects import GITLINK, Unsure

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_MODES = {"100644": 0o666, "100755": 0o777}  # as git creates them: the umask applies


@dataclass(frozen=True)
class Change:
    path: str  # as os.fsdecode gives it
    mode: str | None  # what the target holds there (100644, 100755, 120000, 160000), None: nothing
    sha: str | None


def tree_changes(repo: Path, current: str, target: str) -> list[Change]:
    """Where `target` differs from `current`, path by path (files and links; a folder is its paths)."""
    raw = git_bytes(repo, "diff-tree", "-r", "-z", "--no-renames", current, target, env=NO_INDEX)
    fields = raw.split(b"\0")
    changes = []
    for meta, name in zip(fields[0::2], fields[1::2], strict=False):
        if not meta:
            continue
        _, new_mode, _, new_sha, status = meta.decode().lstrip(":").split(" ")
        gone = status == "D"
        changes.append(Change(os.fsdecode(name), None if gone else new_mode, None if gone else new_sha))
    return changes


def read_blobs(repo: Path, shas: set[str]) -> dict[str, bytes]:
    """The blobs' contents, read by one git process."""
    ordered = sorted(shas)
    return dict(zip(ordered, blob_contents(repo, ordered), strict=True)) if ordered else {}


def put_back(root: Path, changes: list[Change], blobs: dict[str, bytes], written: list[Path]) -> None:
    """Make each changed path hold what the target holds: removals first (a file may give way to a
    folder, or a folder to a file), folders left empty removed as git's checkout would, then the
    files and links written. Each path written (and each folder made) is appended to `written`."""
    if any(change.mode == GITLINK for change in changes):
        raise Unsure("a submodule is among the changes")
    root_fd = os.open(root, _DIR_FLAGS)
    try:
        for change in sorted((c for c in changes if c.mode is None), key=lambda c: c.path, reverse=True):
            _remove(root_fd, change.path)
        for change in changes:
            if change.mode is not None and change.sha is not None:
                _write(root_fd, root, change, blobs[change.sha], written)
    finally:
        os.close(root_fd)


def _folder(root_fd: int, parts: list[str], root: Path | None = None, made: list[Path] | None = None) -> int:
    """The folder at `parts`, opened without following a link; made where missing when `made` is
    given. Raises Unsure when something on the way is not a folder."""
    fd = os.dup(root_fd)
    for index, name in enumerate(parts):
        try:
            inner = os.open(name, _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            if made is None or root is None:
                os.close(fd)
                raise
            os.mkdir(name, 0o777, dir_fd=fd)
            made.append(root.joinpath(*parts[:index + 1]))
            inner = os.open(name, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                raise Unsure(f"{'/'.join(parts[:index + 1])} is not a folder") from exc
            raise
        os.close(fd)
        fd = inner
    return fd


def _remove(root_fd: int, path: str) -> None:
    *parts, name = path.split("/")
    try:
        fd = _folder(root_fd, parts)
    except FileNotFoundError:
        return  # gone already
    try:
        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            raise Unsure(f"{path} is a folder")
        os.unlink(name, dir_fd=fd)
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)
    for depth in range(len(parts), 0, -1):  # the folders this left empty, innermost first
        *above, folder = parts[:depth]
        try:
            fd = _folder(root_fd, above)
        except (FileNotFoundError, Unsure):
            return
        try:
            os.rmdir(folder, dir_fd=fd)
        except OSError:
            return  # not empty (or not there): the folders above it stay too
        finally:
            os.close(fd)


def _write(root_fd: int, root: Path, change: Change, data: bytes, written: list[Path]) -> None:
    *parts, name = change.path.split("/")
    fd = _folder(root_fd, parts, root, written)
    try:
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            info = None
        if info is not None:
            if stat.S_ISDIR(info.st_mode):
                raise Unsure(f"{change.path} is a folder")
            os.unlink(name, dir_fd=fd)  # a new file, as git writes one: a hard link elsewhere keeps the old
        if change.mode == "120000":
            os.symlink(os.fsdecode(data), name, dir_fd=fd)
        elif change.mode in _FILE_MODES:
            file = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                           _FILE_MODES[change.mode], dir_fd=fd)
            try:
                write_all(file, data)
            finally:
                os.close(file)
        else:
            raise Unsure(f"{change.path} has mode {change.mode}")
        written.append(root / change.path)
    finally:
        os.close(fd)
