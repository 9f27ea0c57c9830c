"""New trees without a full `git add -A`: when a step wrote one tracked file, its blob and the trees
on its path are hashed and written as loose objects in-process, from trees read once and kept.

This is the snapshot of a file write; a command still gets the full snapshot (it may change
anything). Only a file the tree already tracks is written this way (a new file may be ignored,
which only git's own rules decide), and only where no attributes can make git store other bytes
than the file's (filters, line-ending conversion)."""

from __future__ import annotations

import os
import tempfile
import zlib
from dataclasses import dataclass, field
from hashlib import sha1
from pathlib import Path

from tether.workspace.git import git

TREE = "40000"


@dataclass(frozen=True)
class Entry:
    mode: str
    name: str
    sha: str

    @property
    def sort_key(self) -> bytes:
        # git orders a tree's entries by name, a subtree as if its name ended with "/"
        return (self.name + "/" if self.mode == TREE else self.name).encode()


@dataclass
class TreeWriter:
    repo: Path  # any directory of the repository (git runs there to read trees)
    objects: Path  # the repository's object store
    trees: dict[str, list[Entry]] = field(default_factory=dict)  # tree id -> its entries, read or written

    def with_file(self, tree: str, path: str, data: bytes, executable: bool) -> str | None:
        """The id of `tree` with the tracked file `path` holding `data`, or None when `path` is not a
        regular file that `tree` tracks (the caller takes a full snapshot instead)."""
        parts = path.split("/")
        chain = [tree]  # the trees from the root down to the file's folder
        for name in parts[:-1]:
            entry = _find(self._entries(chain[-1]), name)
            if entry is None or entry.mode != TREE:
                return None
            chain.append(entry.sha)
        old = _find(self._entries(chain[-1]), parts[-1])
        if old is None or old.mode not in ("100644", "100755"):
            return None
        sha = self._write("blob", data)
        mode = "100755" if executable else "100644"
        child = Entry(mode, parts[-1], sha)
        for depth in range(len(chain) - 1, -1, -1):
            entries = [child if e.name == child.name else e for e in self._entries(chain[depth])]
            if entries == self._entries(chain[depth]):
                return tree  # the same content: nothing changed
            new_tree = self._write("tree", b"".join(
                f"{e.mode} {e.name}".encode() + b"\0" + bytes.fromhex(e.sha) for e in entries))
            self.trees[new_tree] = entries
            if depth:
                child = Entry(TREE, parts[depth - 1], new_tree)
        return new_tree

    def _entries(self, tree: str) -> list[Entry]:
        if tree not in self.trees:
            entries = []
            for record in git(self.repo, "ls-tree", "-z", tree).split("\0"):
                if record:
                    meta, name = record.split("\t", 1)
                    mode, _, sha = meta.split(" ")
                    entries.append(Entry(mode.lstrip("0"), name, sha))  # ls-tree shows 040000; trees store 40000
            self.trees[tree] = sorted(entries, key=lambda e: e.sort_key)
        return self.trees[tree]

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


def _find(entries: list[Entry], name: str) -> Entry | None:
    return next((entry for entry in entries if entry.name == name), None)


def attributes_on_way(worktree: Path, path: str) -> bool:
    """Whether a .gitattributes file (filters, eol) in the worktree may apply to `path`."""
    folder = worktree
    for name in ["", *path.split("/")[:-1]]:
        folder = folder / name if name else folder
        if (folder / ".gitattributes").exists():
            return True
    return False
