"""A clean copy of a tree: the folder a check whose verdict counts runs in. It holds the tree's
files and nothing else (no ignored file, no bytecode cache, no build output the agent left in its
worktree), written from git's objects by Tether itself, so no filter, attribute or hook runs. A
check that passes there passes on a fresh checkout of the commit that is delivered."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tether.paths import tether_dir
from tether.workspace.files import write_regular
from tether.workspace.git import GitError, blob_contents, git
from tether.workspace.project import GENERATED, ProjectEnv


def export_tree(repo: Path, tree: str, dest: Path) -> int:
    """Write `tree`'s files under the empty folder `dest` (created); returns how many. Symlinks are
    made as links (what they point at is the sandbox's business); a submodule is an empty folder."""
    dest.mkdir(parents=True)
    entries: list[tuple[str, str, str]] = []  # (mode, sha, path)
    for record in git(repo, "ls-tree", "-r", "-z", "--full-tree", tree).split("\0"):
        if record:
            meta, path = record.split("\t", 1)
            mode, _kind, sha = meta.split(" ")
            entries.append((mode, sha, path))
    blobs = [(mode, sha, path) for mode, sha, path in entries if mode != "160000"]
    folders = _Folders(dest)
    for mode, _sha, path in entries:
        if mode == "160000":
            folders.target(path).mkdir(exist_ok=True)
    if not blobs:
        return 0
    contents = blob_contents(repo, [sha for _, sha, _ in blobs])
    try:
        for (mode, _sha, path), data in zip(blobs, contents, strict=True):
            target = folders.target(path)
            if mode == "120000":
                os.symlink(data, target)
                continue
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                         0o755 if mode == "100755" else 0o644)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
    finally:
        contents.close()
    return len(blobs)


class _Folders:
    """The folders of an export, each made once, and first checked not to lead outside it (a tree
    cannot make a folder through one of its links; a crafted one is refused)."""

    def __init__(self, dest: Path):
        self.dest = dest
        self.root = Path(os.path.realpath(dest))
        self.made: set[str] = set()  # folders made and found inside; a link never replaces one

    def target(self, path: str) -> Path:
        """`path` under the export, its folder made; GitError for a path that leaves it."""
        if path.startswith("/") or ".." in path.split("/"):
            raise GitError(f"refusing to export {path!r}: not a plain path")
        target = self.dest / path
        parent = str(target.parent)
        if parent not in self.made:
            if not Path(os.path.realpath(parent)).is_relative_to(self.root):
                raise GitError(f"refusing to export {path!r}: its folder leads outside the export")
            os.makedirs(parent, exist_ok=True)
            self.made.add(parent)
        return target


def lay_generated(project: ProjectEnv | None, workdir: Path) -> list[str]:
    """Lay the files the environment's build generated in the source tree (a version file) into
    `workdir` where nothing is at their path (a file of the tree's own wins); returns the paths
    that hold them. Never through a symlink."""
    if project is None:
        return []
    laid = []
    root = Path(os.path.realpath(workdir))
    for relative in project.generated:
        source = project.folder / GENERATED / relative
        target = root / relative
        parent = Path(os.path.realpath(target.parent))
        if not parent.is_relative_to(root) or not source.is_file():
            continue
        if not os.path.lexists(target):
            write_regular(root, target, source.read_bytes())
            laid.append(relative)
    return laid


@contextmanager
def checked_out(repo: Path, tree: str, project: ProjectEnv | None) -> Iterator[Path]:
    """A clean export of `tree` (with the environment's generated files laid in) for the length
    of the block, removed afterwards with whatever was written into it."""
    folder = tether_dir(repo) / "checks" / secrets.token_hex(6)
    folder.parent.mkdir(exist_ok=True)
    try:
        export_tree(repo, tree, folder)
        lay_generated(project, folder)
        yield folder
    finally:
        remove_folder(folder)


def remove_folder(folder: Path) -> None:
    """Remove a folder a sandboxed command wrote, even where it took its own permissions away."""
    if os.geteuid() != 0 and os.path.isdir(folder) and not os.path.islink(folder):
        with contextlib.suppress(OSError):
            os.chmod(folder, stat.S_IRWXU)
        for here, dirs, _files in os.walk(folder):  # top-down: each folder opened before it is entered
            for name in dirs:
                path = os.path.join(here, name)
                if not os.path.islink(path):
                    with contextlib.suppress(OSError):
                        os.chmod(path, stat.S_IRWXU)
    shutil.rmtree(folder, ignore_errors=True)
