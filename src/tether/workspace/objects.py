"""New trees without `git add`: blobs and the trees on their paths hashed and written as loose
objects in-process, from trees read once and kept.

Used where Tether knows exactly what git would store: a write tool's file that the tree already
tracks, and a step's changed paths once git has said which of the new ones it ignores. Only where
no attributes or settings can make git store other bytes than the file's (filters, line-ending
conversion); the callers check that and otherwise let git stage."""

from __future__ import annotations

import os
import tempfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from hashlib import sha1
from pathlib import Path

from tether.workspace.git import git_bytes

TREE, GITLINK = "40000", "160000"
KEPT_TREES = 4096  # trees kept in memory (a long run writes new ones every step)


@dataclass(frozen=True)
class Entry:
    mode: str
    name: str  # as os.fsdecode gives it: a name that is not UTF-8 keeps its bytes
    sha: str

    @property
    def sort_key(self) -> bytes:
        # git orders a tree's entries by name, a subtree as if its name ended with "/"
        return os.fsencode(self.name + "/" if self.mode == TREE else self.name)


class Unsure(Exception):
    """A change git would stage in a way this writer does not model (a path inside a submodule)."""


Updates = dict[tuple[str, ...], "Entry | None"]


@dataclass
class TreeWriter:
    repo: Path  # any directory of the repository (git runs there to read trees)
    objects: Path  # the repository's object store
    trees: OrderedDict[str, list[Entry]] = field(default_factory=OrderedDict)  # tree id -> entries, read or written
    names: dict[str, dict[str, Entry]] = field(default_factory=dict)  # tree id -> its entries by name

    def with_file(self, tree: str, path: str, data: bytes, executable: bool) -> str | None:
        """The id of `tree` with the tracked file `path` holding `data`, or None when `path` is not a
        regular file that `tree` tracks (the caller takes a full snapshot instead)."""
        old = self.entry(tree, path)
        if old is None or old.mode not in ("100644", "100755"):
            return None
        return self.with_entries(tree, {path: self.file_entry(data, executable)})

    def entry(self, tree: str, path: str) -> Entry | None:
        """What `tree` holds at `path` (a file, a link, a folder, a submodule), or None."""
        entry: Entry | None = Entry(TREE, "", tree)
        for name in path.split("/"):
            if entry is None or entry.mode != TREE:
                return None
            entry = self._named(entry.sha).get(name)
        return entry

    def file_entry(self, data: bytes, executable: bool) -> Entry:
        return Entry("100755" if executable else "100644", "", self._write("blob", data))

    def link_entry(self, target: bytes) -> Entry:
        return Entry("120000", "", self._write("blob", target))

    def with_entries(self, tree: str, updates: dict[str, Entry | None]) -> str:
        """`tree` with each path holding its entry (None: no file or link there; a folder there
        stays, changed only by the updates under it). Folders are made as needed and dropped when
        emptied, as git's index would. Raises Unsure for a path under a submodule."""
        grouped: Updates = {tuple(path.split("/")): entry for path, entry in updates.items()}
        return self._apply(tree, grouped) or self._write("tree", b"")

    def _apply(self, tree: str | None, updates: Updates) -> str | None:
        entries = dict(self._named(tree)) if tree else {}
        below: dict[str, Updates] = {}
        for parts, entry in updates.items():
            if len(parts) > 1:
                below.setdefault(parts[0], {})[parts[1:]] = entry
            elif entry is not None:
                entries[parts[0]] = Entry(entry.mode, parts[0], entry.sha)
            elif parts[0] in entries and entries[parts[0]].mode != TREE:
                del entries[parts[0]]
        for name, inner in below.items():
            current = entries.get(name)
            if current is not None and current.mode == GITLINK:
                raise Unsure(f"{name} is a submodule")
            if current is not None and current.mode != TREE and (name,) in updates:
                continue  # a file or link now stands where these paths were: they are gone
            written = self._apply(current.sha if current is not None and current.mode == TREE else None, inner)
            if written is None:
                entries.pop(name, None)
            else:
                entries[name] = Entry(TREE, name, written)
        if not entries:
            return None
        ordered = sorted(entries.values(), key=lambda e: e.sort_key)
        if tree and ordered == self._entries(tree):
            return tree
        written_tree = self._write("tree", b"".join(
            f"{e.mode} ".encode() + os.fsencode(e.name) + b"\0" + bytes.fromhex(e.sha) for e in ordered))
        self._keep(written_tree, ordered)
        return written_tree

    def _entries(self, tree: str) -> list[Entry]:
        if tree in self.trees:
            self.trees.move_to_end(tree)
            return self.trees[tree]
        entries = []
        for record in git_bytes(self.repo, "ls-tree", "-z", tree).split(b"\0"):
            if record:
                meta, name = record.split(b"\t", 1)
                mode, _, sha = meta.decode().split(" ")
                # ls-tree shows 040000; trees store 40000
                entries.append(Entry(mode.lstrip("0"), os.fsdecode(name), sha))
        entries.sort(key=lambda e: e.sort_key)
        self._keep(tree, entries)
        return entries

    def _named(self, tree: str) -> dict[str, Entry]:
        entries = self._entries(tree)
        if tree not in self.names:
            self.names[tree] = {entry.name: entry for entry in entries}
        return self.names[tree]

    def _keep(self, tree: str, entries: list[Entry]) -> None:
        self.trees[tree] = entries
        while len(self.trees) > KEPT_TREES:
            self.names.pop(self.trees.popitem(last=False)[0], None)

    def _write(self, kind: str, data: bytes) -> str:
        """Store a loose object (as git does: compressed, written aside, then renamed into place)."""
        raw = f"{kind} {len(data)}".encode() + b"\0" + data
        sha = sha1(raw).hexdigest()
        folder = self.objects / sha[:2]
        target = folder / sha[2:]
        if not target.exists():
            folder.mkdir(exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=folder, prefix="tmp_obj_")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(zlib.compress(raw, 1))
                os.chmod(temporary, 0o444)
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        return sha


def attributes_on_way(worktree: Path, path: str) -> bool:
    """Whether a .gitattributes file (filters, eol) in the worktree may apply to `path`."""
    folder = worktree
    for name in ["", *path.split("/")[:-1]]:
        folder = folder / name if name else folder
        if (folder / ".gitattributes").exists():
            return True
    return False
