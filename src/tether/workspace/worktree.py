"""A run's git worktree: creation, tree snapshots, rollback, diff stats, delivery as a commit."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from tether.paths import tether_dir
from tether.workspace.agent_git import remove_agent_git
from tether.workspace.changes import Changes
from tether.workspace.checkout import put_back, read_blobs, tree_changes
from tether.workspace.files import look_beneath, read_regular
from tether.workspace.git import NO_INDEX, GitError, common_dir, git, git_bytes, no_other_git, user_git_folder
from tether.workspace.identity import hand_over, hand_over_paths
from tether.workspace.objects import GITLINK, TREE, Entry, TreeWriter, Unsure, attributes_on_way

# Caches and build output that tools leave behind: never part of a snapshot, a cap or a commit.
DEFAULT_IGNORES = [
    "__pycache__/", "*.py[cod]", ".pytest_cache/", ".mypy_cache/", ".ruff_cache/",
    ".hypothesis/", ".coverage", "*.egg-info/", ".tox/", ".venv/", "node_modules/",
]


@contextmanager
def worktree_lock(repo: Path) -> Iterator[None]:
    """Serialise worktree add/remove in one repository across processes: git deletes
    .git/worktrees when its last entry goes, under the feet of a concurrent add."""
    path = tether_dir(repo) / "worktrees.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


SNAPSHOT_FILE_LIMIT = 8 << 20  # larger written files take the full snapshot
_GIT_FALSE = ("false", "no", "off", "0")  # how git spells a boolean that is off
IGNORED_NAMED = "The following paths are ignored by one of your .gitignore files:"
_EMPTY_REPOSITORY = re.compile(r"error: '.*' does not have a commit checked out")


def _pathspecs(paths: Iterable[str]) -> str:
    """Paths for git's stdin, NUL-separated. A name that is not UTF-8 raises UnicodeError here,
    before git starts (a git killed while it writes leaves its index locked)."""
    joined = "\0".join(sorted(paths))
    joined.encode()
    return joined


def registered_git_dir(repo: Path, path: Path) -> Path:
    """A worktree's own git directory, found from the repository's side (its `gitdir` files), never
    from the `.git` file inside the worktree, which the agent's commands could rewrite."""
    expected = path / ".git"
    admin = common_dir(repo) / "worktrees"
    try:
        candidates = sorted(admin.iterdir())
    except FileNotFoundError:  # git removes the folder with the last worktree (another run's)
        candidates = []
    for candidate in candidates:
        try:  # other runs add and remove their worktrees while this one looks
            if Path((candidate / "gitdir").read_text().strip()) == expected:
                return candidate
        except OSError:
            continue
    raise GitError(f"{path} is not a registered worktree of {repo}")


@dataclass
class SnapshotMemory:
    """What a worktree's snapshots carry from one to the next."""
    ignored: set[str] | None = None  # the changed paths git ignored, when the last snapshot staged by path
    tree: str | None = None  # the last snapshot's tree
    index_behind: bool = False  # the last snapshots were written in-process: the index has not seen them


class WorkspaceTampered(Exception):
    """The worktree's `.git` pointer was changed: git would follow it out of the run's worktree."""


@dataclass(frozen=True)
class FileChange:
    path: str
    added: int
    removed: int


@dataclass(frozen=True)
class DiffStat:
    files: list[FileChange]

    @property
    def lines(self) -> int:
        return sum(change.added + change.removed for change in self.files)

    @property
    def paths(self) -> list[str]:
        return [change.path for change in self.files]

    def as_dict(self) -> dict[str, int]:
        return {"files": len(self.files), "added": sum(c.added for c in self.files),
                "removed": sum(c.removed for c in self.files)}


@dataclass(frozen=True)
class Worktree:
    repo: Path
    path: Path
    branch: str
    base_commit: str
    exclude_file: Path

    @cached_property
    def git_dir(self) -> Path:
        return registered_git_dir(self.repo, self.path)

    def exclude(self, paths: list[str]) -> None:
        """Leave these worktree paths out of every snapshot (files Tether lays in, such as a version
        file the environment's build generated)."""
        lines = self.exclude_file.read_text().splitlines() if self.exclude_file.is_file() else []
        wanted = [f"/{path}" for path in paths if f"/{path}" not in lines]
        if wanted:
            self.exclude_file.write_text("\n".join([*lines, *wanted]) + "\n")
            if self._changes is not None:  # other paths may be left out now
                self._changes.distrust()

    def _git(self, *args: str, stdin: str | None = None, literal: bool = False,
             succeeds: tuple[int, ...] = (0,)) -> str:
        """git on the worktree's own index (`literal`: pathspecs are paths, no magic)."""
        env = self._env
        return git(self.path, *self._config, *args, input_text=stdin, succeeds=succeeds,
                   env={**env, "GIT_LITERAL_PATHSPECS": "1"} if literal else env)

    @property
    def _env(self) -> dict[str, str]:
        # GIT_DIR and GIT_WORK_TREE: git must not discover anything from files the agent wrote; and
        # it must not start another git in a repository the agent made inside the worktree.
        return {"GIT_DIR": str(self.git_dir), "GIT_WORK_TREE": str(self.path), **no_other_git()}

    @property
    def _config(self) -> tuple[str, ...]:
        # A split index: a step's snapshot writes the entries it changed, not all of them.
        return ("-c", f"core.excludesFile={self.exclude_file}", "-c", "core.splitIndex=true")

    def check_pointer(self) -> None:
        """Put the worktree's `.git` file back if anything changed it, and say so."""
        pointer = self.path / ".git"
        expected = f"gitdir: {self.git_dir}\n"
        try:
            info = os.lstat(pointer)
            intact = stat.S_ISREG(info.st_mode) and pointer.read_text() == expected
        except (OSError, UnicodeDecodeError):
            intact = False
        if intact:
            return
        if pointer.is_dir() and not pointer.is_symlink():
            shutil.rmtree(pointer)
        else:
            pointer.unlink(missing_ok=True)
        pointer.write_text(expected)
        raise WorkspaceTampered(f"the worktree's .git pointer was changed (it must stay {expected.strip()!r}); "
                                "it was put back")

    def snapshot(self) -> str:
        """Everything in the worktree as a tree, and its id: the last snapshot's tree with the paths
        the kernel saw change since, or, when it cannot say, `git add -A` of them all."""
        self.check_pointer()
        changed = self._changes.take() if self._changes is not None else None
        memory = self._memory
        memory.ignored, tree = None, None
        if changed is not None:
            try:
                tree, memory.ignored = self._stage(changed) if changed else (memory.tree, set())
            except (GitError, UnicodeError):  # git's word on these paths (or a name that is not UTF-8): in full
                changed = None
        if tree is None:
            try:
                self._stage_all()
                self._resplit()
            except GitError:
                if self._changes is not None:
                    self._changes.distrust()
                raise
            tree = self._git("write-tree").strip()
        memory.tree = tree
        return tree

    def _resplit(self) -> None:
        """After git rewrote every entry, start the shared index again, so that each watched step
        writes only the entries it changed (else each would rewrite them all)."""
        if self._changes is not None:
            self._git("update-index", "--split-index")

    @cached_property
    def _changes(self) -> Changes | None:
        return Changes.start(self.path)

    @cached_property
    def _memory(self) -> SnapshotMemory:
        return SnapshotMemory()

    def _stage(self, changed: set[str]) -> tuple[str, set[str]]:
        """The tree with these paths as they are now, and those of them git ignores: written
        in-process where Tether knows what git would store, else staged by git."""
        written = self._write_changes(changed)
        if written is not None:
            return written
        self._sync_index()
        return self._add(changed)

    def _add(self, changed: set[str]) -> tuple[str, set[str]]:
        """`git add -A` for these paths alone: a path in a repository the agent made inside the
        worktree stands for that repository; a path gone from the disk leaves the index. Returns
        the tree and the changed paths git ignores (it names them as it leaves them out)."""
        present, gone, standing_for = set(), set(), self._standing_for(changed)
        for staged in standing_for:
            (present if os.path.lexists(self.path / staged) else gone).add(staged)
        if gone:
            self._git("rm", "--cached", "-f", "-q", "--ignore-unmatch", "--pathspec-from-file=-", "--pathspec-file-nul",
                      stdin=_pathspecs(gone), literal=True)
        ignored: set[str] = set()
        if present:
            try:
                self._git("-c", "advice.addIgnoredFile=false", "add", "-A", "--ignore-errors", "--pathspec-from-file=-",
                          "--pathspec-file-nul", stdin=_pathspecs(present), literal=True)
            except GitError as exc:  # an ignored path named: git says so, and stages the others
                said = str(exc).splitlines()
                if not said[0].endswith(IGNORED_NAMED) or any("fatal:" in line or "error:" in line for line in said):
                    raise
                named = tuple(line for line in said[1:] if line)  # a path, or the ignored folder it is in
                ignored = {path for staged, paths in standing_for.items() if staged in named
                           or staged.startswith(tuple(f"{folder}/" for folder in named)) for path in paths}
        return self._git("write-tree").strip(), ignored

    def _write_changes(self, changed: set[str]) -> tuple[str, set[str]] | None:
        """What `_add` would stage, written in-process: the last snapshot's tree with each changed
        path as it is on the disk (git decides only which new paths it ignores). None where only git
        can say: a repository inside the worktree, attributes, a submodule, something other than a
        file, link or folder, a file too large to hold."""
        writer, base = self._tree_writer, self._memory.tree
        if writer is None or base is None:
            return None
        standing_for = self._standing_for(changed)
        if any(paths != [staged] for staged, paths in standing_for.items()):
            return None
        try:
            files: set[str] = set()  # the changed paths that are a file or a link now
            untracked: list[str] = []
            for path in standing_for:
                if attributes_on_way(self.path, path):
                    return None
                found = look_beneath(self.path, path, 0)
                if found is None:
                    continue
                mode = found[0].st_mode
                if stat.S_ISDIR(mode):
                    if os.path.lexists(self.path / path / ".git"):
                        return None
                    continue
                if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                    return None
                files.add(path)
                tracked = writer.entry(base, path)
                if tracked is not None and tracked.mode == GITLINK:
                    return None
                if tracked is None or tracked.mode == TREE:
                    untracked.append(path)
            ignored = self._ignored_untracked(untracked)
            tree = writer.with_entries(base, {path: self._entry(writer, path) if path in files - ignored else None
                                              for path in standing_for})
        except (OSError, Unsure):
            return None
        self._memory.index_behind = True
        return tree, ignored

    def _entry(self, writer: TreeWriter, path: str) -> Entry | None:
        """The entry git would stage for a file or a link (None: gone since); Unsure when it cannot
        be held in memory."""
        found = look_beneath(self.path, path, SNAPSHOT_FILE_LIMIT)
        if found is None or stat.S_ISDIR(found[0].st_mode):
            return None
        info, data = found
        if stat.S_ISLNK(info.st_mode):
            return writer.link_entry(data)
        if not stat.S_ISREG(info.st_mode) or len(data) != info.st_size:
            raise Unsure(f"{path} is not a regular file of at most {SNAPSHOT_FILE_LIMIT} bytes")
        return writer.file_entry(data, bool(info.st_mode & stat.S_IXUSR))

    def _ignored_untracked(self, paths: list[str]) -> set[str]:
        """Those of these untracked paths git ignores (by the rules alone: the index may be behind)."""
        if not paths:
            return set()
        said = self._git("check-ignore", "--no-index", "-z", "--stdin", stdin=_pathspecs(paths) + "\0",
                         succeeds=(0, 1))  # 1: none
        return set(filter(None, said.split("\0")))

    def _sync_index(self) -> None:
        """Bring the index up to the last snapshot where in-process snapshots left it behind,
        keeping the stat data of entries that match (git reads again only what changed)."""
        if self._memory.index_behind and self._memory.tree is not None:
            self._git("read-tree", "--reset", self._memory.tree)
        self._memory.index_behind = False

    def _standing_for(self, changed: set[str]) -> dict[str, list[str]]:
        """The path git stages for each changed path, with the changed paths it stands for."""
        staged: dict[str, list[str]] = {}
        for path in changed:
            standing = self._staged_path(path)
            if standing is not None:
                staged.setdefault(standing, []).append(path)
        return staged

    def _staged_path(self, path: str) -> str | None:
        """What git stages for a changed path: itself, or the repository inside the worktree it is
        in (git stages that as one entry); None for the worktree's own `.git` pointer."""
        parts = path.split("/")
        if ".git" in parts:
            parts = parts[:parts.index(".git")]
        for depth in range(1, len(parts)):
            if os.path.lexists(self.path.joinpath(*parts[:depth], ".git")):
                return "/".join(parts[:depth])
        return "/".join(parts) or None

    def snapshot_file(self, tree: str, relative: str) -> str:
        """The tree after a write tool replaced the file `relative` (nothing else changed since `tree`):
        written in-process when the file is tracked and git would store its bytes as they are, else
        a full snapshot. The worktree's index is left behind; the next full snapshot catches up."""
        self.check_pointer()
        writer = self._tree_writer
        if writer is not None and not attributes_on_way(self.path, relative):
            try:
                mode = os.lstat(self.path / relative).st_mode
                data, size = read_regular(self.path / relative, SNAPSHOT_FILE_LIMIT)
            except OSError:
                mode, data, size = 0, b"", -1
            if stat.S_ISREG(mode) and size == len(data):
                written = writer.with_file(tree, relative, data, bool(mode & stat.S_IXUSR))
                if written is not None:
                    return written
        return self.snapshot()

    @cached_property
    def _tree_writer(self) -> TreeWriter | None:
        """None where git may store other bytes or modes than the disk's (line-ending conversion,
        attributes for the whole repository, modes or links not trusted, another hash): every
        snapshot is then git's own."""
        common = common_dir(self.repo)
        if (common / "info" / "attributes").exists() or (user_git_folder() / "attributes").exists():
            return None
        settings = dict(f"{item}\n".split("\n", 1) for item in self._git("config", "--list", "-z").split("\0") if item)
        value = {key.lower(): given.strip().lower() for key, given in settings.items()}.get

        def enabled(key: str, default: str) -> bool:
            return value(key, default) not in _GIT_FALSE
        if (enabled("core.autocrlf", "false") or enabled("core.ignorecase", "false")
                or enabled("core.precomposeunicode", "false") or not enabled("core.filemode", "true")
                or not enabled("core.symlinks", "true")
                or value("extensions.objectformat", "sha1") != "sha1" or value("core.attributesfile")):
            return None
        return TreeWriter(self.repo, common / "objects")

    def _stage_all(self) -> None:
        """`git add -A`, except that a repository the agent made inside the worktree with no commit
        yet is left out (git cannot stage it) instead of failing every later snapshot."""
        self._sync_index()
        try:
            self._git("add", "-A", "--ignore-errors")
        except GitError as exc:
            errors = [line for line in str(exc).splitlines() if "error:" in line or "fatal:" in line]
            if not errors or not all(_EMPTY_REPOSITORY.search(line) for line in errors):
                raise

    def restore(self, tree: str) -> None:
        """Make the worktree's files exactly `tree` (files created since are removed): the paths
        that differ written in-process where Tether knows what git would write, else by git."""
        with contextlib.suppress(WorkspaceTampered):  # put back; the caller stops or rolls back
            self.check_pointer()
        current = self.snapshot()  # files created since are known, and removed (what changed, not a walk)
        if current == tree or self._put_back(current, tree):
            return
        self._sync_index()
        # What git is about to write or remove: where the index (the worktree now) and `tree` differ.
        rewritten = git_bytes(self.path, *self._config, "diff-index", "--cached", "-z", "--name-only", "--no-renames",
                              tree, env=self._env)
        self._git("read-tree", "--reset", "-u", tree)
        self._memory.tree, self._memory.index_behind = tree, False  # what is tracked now
        self._resplit()
        names = {os.fsdecode(name) for name in rewritten.split(b"\0") if name}
        if self._changes is not None:
            self._changes.also(names)
        hand_over_paths(self.path, [self.path / name for name in names])

    def _put_back(self, current: str, tree: str) -> bool:
        """Write where `tree` differs from the worktree (whose snapshot is `current`) in-process, and
        take a snapshot to check it: True when the worktree is now `tree`. Only with the kernel
        watching (the check then reads just the paths written) and where git would write the blobs'
        bytes as they are."""
        if self._changes is None or self._tree_writer is None:
            return False
        changes = tree_changes(self.repo, current, tree)
        if any(change.path.rsplit("/", 1)[-1] == ".gitattributes" or attributes_on_way(self.path, change.path)
               for change in changes):
            return False
        written: list[Path] = []
        try:
            put_back(self.path, changes, read_blobs(self.repo, {c.sha for c in changes if c.sha}), written)
        except (OSError, Unsure, GitError):
            hand_over_paths(self.path, written)
            self.snapshot()  # what was written before, known to git, which goes on from there
            return False
        hand_over_paths(self.path, written)
        return self.snapshot() == tree

    def ignored_changed_since(self, since_ns: int) -> list[str]:
        """Ignored files (caches, build output, gitignored names) created or changed since
        `since_ns`, by their ctime, which no program can set back. Among the paths the kernel saw
        change, where it can say, else among all the ignored files."""
        recent = self._changes.recent() if self._changes is not None else None
        known = self._memory.ignored
        listing = None
        if recent is not None and known is not None and self._changes is not None and recent == self._changes.last:
            listing = "\0".join(known)  # the last snapshot staged just these paths, and git named the ignored
        elif recent is not None:
            with contextlib.suppress(UnicodeError):  # a name that is not UTF-8: ask git about every ignored file
                listing = self._ignored(recent)
        if listing is None:
            listing = self._git("ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory")
        changed: list[str] = []
        for entry in filter(None, listing.split("\0")):
            top = self.path / entry
            if not entry.endswith("/"):
                candidates = [top]
            else:
                candidates = [Path(folder) / name for folder, dirs, files in os.walk(top) for name in [*dirs, *files]]
            for path in candidates:
                try:
                    info = os.lstat(path)
                except FileNotFoundError:
                    continue
                if info.st_ctime_ns >= since_ns and not stat.S_ISDIR(info.st_mode):
                    changed.append(path.relative_to(self.path).as_posix())
        return sorted(changed)

    def _ignored(self, paths: set[str]) -> str:
        """Those of `paths` git ignores (none it tracks; a path in a repository inside the worktree
        by that repository), NUL-separated as ls-files lists them."""
        asked = self._standing_for(paths)
        if not asked:
            return ""
        self._sync_index()
        said = self._git("check-ignore", "-z", "--stdin", stdin=_pathspecs(asked) + "\0", succeeds=(0, 1))  # 1: none
        return "\0".join(path for ignored in said.split("\0") if ignored for path in asked.get(ignored, []))

    def remove_files(self, relative: list[str]) -> None:
        """Delete files (a symlink itself, never its target) that are not part of any snapshot."""
        for name in relative:
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                (self.path / name).unlink()

    def base_tree(self) -> str:
        return git(self.repo, "rev-parse", f"{self.base_commit}^{{tree}}").strip()

    def diff(self, from_tree: str, to_tree: str) -> DiffStat:
        if from_tree == to_tree:
            return DiffStat([])
        out = git(self.repo, "diff-tree", "-r", "--no-renames", "--numstat", "-z", from_tree, to_tree, env=NO_INDEX)
        changes = []
        for record in filter(None, out.split("\0")):
            added, removed, path = record.split("\t", 2)
            # Binary files report "-": count them as one changed line so caps still see them.
            changes.append(FileChange(path, int(added) if added != "-" else 1,
                                      int(removed) if removed != "-" else 0))
        return DiffStat(changes)

    def deleted(self, from_tree: str, to_tree: str) -> list[str]:
        """The files of `from_tree` that `to_tree` no longer has."""
        if from_tree == to_tree:
            return []
        out = git(self.repo, "diff-tree", "-r", "--no-renames", "--diff-filter=D", "--name-only", "-z",
                  from_tree, to_tree, env=NO_INDEX)
        return [path for path in out.split("\0") if path]

    def patch(self, from_tree: str, to_tree: str, paths: list[str], limit: int) -> str:
        """The unified diff between two trees for `paths` (git's own diff: no driver, no textconv)."""
        text = git(self.repo, "diff-tree", "-p", "-r", "--no-renames", "--no-ext-diff", "--no-textconv",
                   from_tree, to_tree, "--", *paths, env=NO_INDEX)
        return text if len(text) <= limit else text[:limit] + f"\n[... {len(text) - limit} more characters]"

    def commit(self, tree: str, message: str) -> str:
        """Record `tree` as a commit on the run's branch (no hooks, no user identity needed)."""
        parent = git(self.repo, "rev-parse", f"refs/heads/{self.branch}").strip()
        if git(self.repo, "rev-parse", f"{parent}^{{tree}}").strip() == tree:
            return parent
        commit = git(self.repo, "commit-tree", tree, "-p", parent, "-F", "-", input_text=message).strip()
        git(self.repo, "update-ref", f"refs/heads/{self.branch}", commit, parent)
        # The worktree's HEAD is the branch; keep its index in step so it reads as clean.
        self._git("read-tree", tree)
        self._memory.tree, self._memory.index_behind = tree, False
        if self._changes is not None:  # the index may now differ from files no one changed
            self._changes.distrust()
        return commit

    def remove(self) -> None:
        watched = self.__dict__.get("_changes")  # only if a snapshot started a watch
        if watched is not None:
            watched.close()
        remove_worktree(self.repo, self.path)


def remove_worktree(repo: Path, path: Path) -> None:
    """Remove a Tether worktree of `repo`, its exclude file and the agent's own git dir; its branch stays."""
    with worktree_lock(repo):
        try:
            git(repo, "worktree", "remove", "--force", str(path))
        except GitError:
            shutil.rmtree(path, ignore_errors=True)
            git(repo, "worktree", "prune")
    path.with_name(path.name + ".exclude").unlink(missing_ok=True)
    remove_agent_git(repo, path)


# A new worktree's files written by a git process per core: one after another, each waits on the disk
# for its object (4.2x slower at 50,000 files with the objects not cached; as fast with them cached).
# Only where git itself starts its workers: Tether's git inside a worktree starts no other git.
PARALLEL_CHECKOUT = ("-c", "checkout.workers=0")


def create_worktree(repo: Path, run_id: str, base_commit: str, ignores: list[str]) -> Worktree:
    root = tether_dir(repo) / "worktrees"
    root.mkdir(exist_ok=True)
    worktree = Worktree(repo=repo, path=root / run_id, branch=f"tether/{run_id}", base_commit=base_commit,
                        exclude_file=root / f"{run_id}.exclude")
    worktree.exclude_file.write_text("\n".join([*DEFAULT_IGNORES, *ignores]) + "\n")
    with worktree_lock(repo):
        git(repo, *PARALLEL_CHECKOUT, "worktree", "add", "--quiet", "-b", worktree.branch, str(worktree.path),
            base_commit)
    hand_over(worktree.path)
    return worktree


def add_detached_worktree(repo: Path, path: Path, commit: str) -> None:
    """A checkout of `commit` that is Tether's alone (the environment's setup runs in it), on no branch."""
    with worktree_lock(repo):
        git(repo, *PARALLEL_CHECKOUT, "worktree", "add", "--quiet", "--detach", str(path), commit)
    hand_over(path)


def open_worktree(repo: Path, run_id: str, base_commit: str) -> Worktree:
    root = tether_dir(repo) / "worktrees"
    return Worktree(repo=repo, path=root / run_id, branch=f"tether/{run_id}", base_commit=base_commit,
                    exclude_file=root / f"{run_id}.exclude")


def reattach_worktree(worktree: Worktree, ignores: list[str]) -> Worktree:
    """Recreate a run's worktree (lost with its machine, say) on the run's existing branch."""
    worktree.path.parent.mkdir(parents=True, exist_ok=True)
    worktree.exclude_file.write_text("\n".join([*DEFAULT_IGNORES, *ignores]) + "\n")
    with worktree_lock(worktree.repo):
        git(worktree.repo, "worktree", "prune")
        git(worktree.repo, *PARALLEL_CHECKOUT, "worktree", "add", "--quiet", str(worktree.path), worktree.branch)
    hand_over(worktree.path)
    return worktree
