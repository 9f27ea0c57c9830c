"""Which paths of a worktree changed since the last look, from the kernel (inotify), so that a
step's snapshot costs what the step changed rather than what the repository holds.

The answer is a superset of what changed, or None when it cannot be trusted (the kernel's queue
overflowed, a folder was moved, a file has a second name somewhere, ignore or attribute rules
changed, or nothing was looked at yet): the caller then takes a full snapshot, after which the
watch is exact again. Writes in the sandbox are seen: a watch follows the inode, not the mount."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
import struct
import sys
import threading
from collections import OrderedDict
from pathlib import Path

IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF, IN_Q_OVERFLOW, IN_IGNORED = 0x400, 0x800, 0x4000, 0x8000
IN_ONLYDIR, IN_DONT_FOLLOW, IN_ISDIR = 0x01000000, 0x02000000, 0x40000000
WATCHED = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
           | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW)
EVENT = struct.Struct("iIII")
MAX_LIVE = 16  # open watches per process (inotify instances: 128 per user by default)
# Files whose change alters how git stages other paths than themselves.
RULE_FILES = (".gitignore", ".gitattributes")


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_add_watch  # noqa: B018 (present on every Linux libc; checked, not assumed)
    except (OSError, AttributeError):
        return None
    return libc


_LIVE: OrderedDict[Changes, None] = OrderedDict()
_LIVE_LOCK = threading.RLock()


class Changes:
    """The paths under `root` created, written, deleted, renamed or re-moded since the last `take`."""

    def __init__(self, root: Path, libc: ctypes.CDLL):
        self.root = root
        self.libc = libc
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.folders: dict[int, str] = {}  # watch descriptor -> folder, relative ("" for the root)
        self.changed: set[str] = set()
        self.trusted = False  # nothing is known until the caller has taken a full snapshot once
        self.starts = 0
        self.last: set[str] | None = None  # what the last `take` answered
        if not self._watch_tree("", report=False):
            self._close_fd()
            raise OSError(errno.ENOSPC, "the inotify watch limit is reached")

    @classmethod
    def start(cls, root: Path) -> Changes | None:
        """A watch on `root`, or None where the kernel offers none or TETHER_FULL_SNAPSHOTS=1 asks
        for none (the caller snapshots in full)."""
        libc = _libc()
        if libc is None or os.environ.get("TETHER_FULL_SNAPSHOTS") == "1":
            return None
        try:
            changes = cls(root, libc)
        except OSError:
            return None
        with _LIVE_LOCK:  # the kernel allows a user 128 watches in all: a process keeps a few
            _LIVE[changes] = None
            while len(_LIVE) > MAX_LIVE:
                oldest, _ = _LIVE.popitem(last=False)
                oldest.close()  # its worktree, the least recently started, snapshots in full from now on
        return changes

    def take(self) -> set[str] | None:
        """What changed since the last call (relative paths, files and symlinks), or None: take a
        full snapshot, after which the next answer is exact again."""
        if self.fd < 0:  # the watch limit was reached on a new start: full snapshots from now on
            return None
        self._read()
        changed, self.changed = self.changed, set()
        trusted, self.trusted = self.trusted, True
        self.last = None if not trusted or any(self._second_name(path) for path in changed) else changed
        return self.last

    def recent(self) -> set[str] | None:
        """What changed since the call to `take` before the last one (a superset of what the last
        step changed, in whichever order the caller looks), or None."""
        if self.fd < 0 or self.last is None or not self.trusted:
            return None
        self._read()
        return None if not self.trusted else self.last | self.changed

    def also(self, paths: set[str]) -> None:
        """Paths the next `take` names too, whatever the kernel saw: those git was asked to write,
        where what it left may not be what was asked (a repository inside the worktree stays as it is)."""
        self.changed.update(paths)

    def distrust(self) -> None:
        """The next `take` answers None (a snapshot failed half-way, or rules changed)."""
        self.trusted = False

    def close(self) -> None:
        self._close_fd()
        with _LIVE_LOCK:
            _LIVE.pop(self, None)

    def _close_fd(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self.fd = -1

    def __del__(self) -> None:
        self._close_fd()

    def _read(self) -> None:
        while self.fd >= 0:
            try:
                data = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                return
            offset, starts = 0, self.starts
            while offset < len(data) and self.starts == starts:  # after a new start, the rest names old watches
                watch, mask, _, length = EVENT.unpack_from(data, offset)
                name = data[offset + EVENT.size: offset + EVENT.size + length].rstrip(b"\0")
                offset += EVENT.size + length
                self._event(watch, mask, os.fsdecode(name))

    def _event(self, watch: int, mask: int, name: str) -> None:
        if mask & IN_Q_OVERFLOW:
            self._rewatch()
            return
        folder = self.folders.get(watch)
        if folder is None:
            return
        if mask & IN_IGNORED:
            del self.folders[watch]
            return
        if mask & (IN_DELETE_SELF | IN_MOVE_SELF):
            if folder == "":  # the worktree itself went away or moved
                self._rewatch()
            return
        path = f"{folder}/{name}" if folder else name
        if name in RULE_FILES:
            self.trusted = False
        if mask & IN_ISDIR:
            if mask & IN_MOVED_FROM:  # the watches under it now name the wrong folders
                self._rewatch()
            elif mask & (IN_CREATE | IN_MOVED_TO) and not self._watch_tree(path, report=True):
                self.close()
            return
        self.changed.add(path)

    def _watch_tree(self, relative: str, report: bool) -> bool:
        """Watch `relative` and every folder under it; with `report`, everything in it is changed
        (it is new: what was written in it before its watch existed was seen by no one). False when
        the user's watch limit is reached."""
        top = self.root / relative if relative else self.root
        for folder, dirs, files in os.walk(top):
            inside = Path(folder).relative_to(self.root).as_posix()
            inside = "" if inside == "." else inside
            watch = self.libc.inotify_add_watch(self.fd, os.fsencode(folder), WATCHED)
            if watch < 0:
                if ctypes.get_errno() == errno.ENOSPC:
                    return False
                continue  # gone already
            self.folders[watch] = inside
            if report:
                prefix = f"{inside}/" if inside else ""
                self.changed.update(prefix + name for name in files)
                self.changed.update(prefix + name for name in dirs if os.path.islink(os.path.join(folder, name)))
        return True

    def _rewatch(self) -> None:
        """Start again from nothing: every watch anew, and a full snapshot next."""
        self._close_fd()
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        self.folders, self.trusted, self.starts = {}, False, self.starts + 1
        if self.fd >= 0 and not self._watch_tree("", report=False):
            self.close()

    def _second_name(self, path: str) -> bool:
        """A file with another hard link may change through that name, which this watch may not see."""
        try:
            info = os.lstat(self.root / path)
        except OSError:
            return False
        return stat.S_ISREG(info.st_mode) and info.st_nlink > 1
