"""A step's snapshot stages only the paths the kernel saw change, and is always the tree a full
`git add -A` makes: random commands (creates, deletes, renames of files and folders, mode changes,
symlinks, ignored files, rule files, nested repositories, hard links), on the host and in the
sandbox, each compared with a full snapshot in an index of its own."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import git
from tests.workspace.conftest import full_snapshot, index_copy, small_worktree
from tether.policy.schema import SandboxPolicy
from tether.workspace.changes import Changes
from tether.workspace.git import GitError
from tether.workspace.git import git as tether_git
from tether.workspace.sandbox import Sandbox
from tether.workspace.worktree import Worktree, create_worktree

FILES = ["a.py", "src/pkg/mod.py", "src/pkg/deep/x.txt", "src/other.py", "docs/readme.md", "run.sh", "build.log"]


@pytest.fixture
def worktree(tmp_path: Path) -> Worktree:
    return small_worktree(tmp_path, FILES, {".gitignore": "*.log\nbuild/\n"})


def ignored_since(worktree: Worktree, since_ns: int) -> list[str]:
    """The ignored files changed since `since_ns`, from every ignored file and folder git lists."""
    listing = tether_git(worktree.path, "-c", f"core.excludesFile={worktree.exclude_file}", "ls-files", "-z",
                         "--others", "--ignored", "--exclude-standard", "--directory",
                         env={"GIT_DIR": str(worktree.git_dir), "GIT_WORK_TREE": str(worktree.path)})
    found = []
    for entry in filter(None, listing.split("\0")):
        top = worktree.path / entry
        paths = [top] if not entry.endswith("/") else [Path(folder) / name for folder, dirs, files in os.walk(top)
                                                      for name in [*dirs, *files]]
        found += [path.relative_to(worktree.path).as_posix() for path in paths
                  if not path.is_dir() or path.is_symlink()
                  if os.lstat(path).st_ctime_ns >= since_ns]
    return sorted(found)


def random_command(chance: random.Random, step: int) -> str:
    """One shell command of the kinds an agent runs."""
    name = chance.choice(["a.py", "src/pkg/mod.py", "src/new.py", "src/pkg/deep/x.txt", "docs/readme.md",
                          "run.sh", "notes.txt", "build.log", "src/pkg/made.py"])
    folder = chance.choice(["src/pkg", "src/pkg/deep", "docs", "fresh", "fresh/inner", "build"])
    q = shlex.quote
    kinds = [
        f"mkdir -p $(dirname {q(name)}) && echo 'v{step}' > {q(name)}",
        f"echo 'more {step}' >> {q(name)}",
        f"rm -f {q(name)}",
        f"chmod +x {q(name)} 2>/dev/null; true",
        f"chmod -x {q(name)} 2>/dev/null; true",
        f"mkdir -p {q(folder)} && echo {step} > {q(folder)}/f{step}.py",
        f"rm -rf {q(folder)}",
        f"test -e {q(name)} && mv {q(name)} {q(name)}.moved; true",
        f"test -d {q(folder)} && mv {q(folder)} {q(folder)}-renamed; true",
        f"ln -sfn {q(name)} link{step % 3}",
        f"mkdir -p {q(folder)} && ln -sfn ../a.py {q(folder)}/up",
        f"mkdir -p build && echo {step} > build/out{step}.o && echo x > trace{step}.log",
        f"echo '*.tmp' >> .gitignore && echo t > keep{step}.tmp",
        "sed -i '/log/d' .gitignore",  # files ignored until now are part of the tree
        f"mkdir -p nested{step % 2} && cd nested{step % 2} && (test -d .git || git init -q) && echo {step} > n.txt "
        f"&& git add -A && git -c user.email=a@b -c user.name=a commit -qm n{step}; true",
        f"mkdir -p empty{step % 2} && cd empty{step % 2} && (test -d .git || git init -q); true",
        f"test -f {q(name)} && ln -f {q(name)} hard{step % 2}; true",
        f"printf 'x' > {q(name)}.tmp2 && mv -f {q(name)}.tmp2 {q(name)} 2>/dev/null; true",
        f"test -f {q(name)} && : > {q(name)}; true",
        "touch -d '2001-01-01' a.py; true",
        f"printf '{step}' > $'src/caf\\xe9{step % 2}.txt'",  # a name that is not UTF-8
    ]
    return " ; ".join(chance.choice(kinds) for _ in range(chance.randint(1, 3)))


@pytest.mark.parametrize("seed", range(6))
def test_random_commands_give_the_tree_a_full_snapshot_gives(worktree: Worktree, tmp_path: Path, seed: int,
                                                             monkeypatch: pytest.MonkeyPatch):
    full_stages: list[int] = []
    stage_all = Worktree._stage_all
    monkeypatch.setattr(Worktree, "_stage_all", lambda self: full_stages.append(1) or stage_all(self))
    in_process: list[bool] = []
    write_changes = Worktree._write_changes
    monkeypatch.setattr(Worktree, "_write_changes",
                        lambda self, changed: in_process.append(bool(r := write_changes(self, changed))) or r)
    chance = random.Random(seed)
    sandbox = Sandbox(SandboxPolicy(), worktree.path) if seed % 2 else None
    trees = [worktree.snapshot()]
    for step in range(40):
        if step % 7 == 6:  # a refused step rolled back, an attempt started again from an earlier tree
            worktree.restore(chance.choice(trees))
            before = index_copy(worktree)
            assert worktree.snapshot() == full_snapshot(worktree, before), (step, "restore")
        command = random_command(chance, step)
        since = time.time_ns() - 10_000_000  # the session's slack for coarse ctimes
        if sandbox is not None:
            result = sandbox.run(command, 30)
            assert "tether:" not in result.output, result.output
        else:
            subprocess.run(["bash", "-c", command], cwd=worktree.path, capture_output=True, timeout=30,
                           env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1"})
        before = index_copy(worktree)
        trees.append(worktree.snapshot())
        assert trees[-1] == full_snapshot(worktree, before), (step, command)
        assert worktree.ignored_changed_since(since) == ignored_since(worktree, since), (step, command)
    assert len(full_stages) < 40 * 0.8, "most steps should have staged only what changed"
    assert any(in_process), "some steps should have been written in-process"


def test_a_step_that_changes_one_file_stages_only_it(worktree: Worktree, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path):
    worktree.snapshot()
    calls: list[str] = []
    real = Worktree._stage
    monkeypatch.setattr(Worktree, "_stage", lambda self, changed: calls.append(sorted(changed)) or real(self, changed))
    (worktree.path / "src" / "pkg" / "mod.py").write_text("changed\n")
    tree = worktree.snapshot()
    assert calls == [["src/pkg/mod.py"]]
    assert tree == full_snapshot(worktree)
    assert worktree.snapshot() == tree and calls == [["src/pkg/mod.py"]]  # nothing changed: nothing staged


def git_commands(worktree: Worktree, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The git commands the worktree runs from now on (their first word after the config)."""
    called: list[str] = []
    real = Worktree._git

    def recorded(self: Worktree, *args: str, **kwargs: object) -> str:
        called.append(next(arg for arg in args if not arg.startswith("-") and "=" not in arg))
        return real(self, *args, **kwargs)  # type: ignore[arg-type]
    monkeypatch.setattr(Worktree, "_git", recorded)
    return called


def test_a_step_is_written_in_process_and_git_is_asked_only_what_it_ignores(
        worktree: Worktree, monkeypatch: pytest.MonkeyPatch):
    worktree.snapshot()
    assert worktree._tree_writer is not None  # read once: the repository's settings allow it
    called = git_commands(worktree, monkeypatch)
    before = index_copy(worktree)
    since = time.time_ns() - 10_000_000
    (worktree.path / "src" / "pkg" / "mod.py").write_text("changed\n")
    (worktree.path / "src" / "fresh" / "deep").mkdir(parents=True)
    (worktree.path / "src" / "fresh" / "deep" / "new.py").write_text("new\n")
    (worktree.path / "trace.log").write_text("ignored\n")
    (worktree.path / "docs" / "readme.md").unlink()  # its folder is empty now: gone from the tree
    (worktree.path / "a.py").chmod(0o755)
    (worktree.path / "link").symlink_to("src/other.py")
    tree = worktree.snapshot()
    assert called == ["check-ignore"], called
    assert tree == full_snapshot(worktree, before)
    assert worktree.ignored_changed_since(since) == ignored_since(worktree, since) == ["trace.log"]
    (worktree.path / "src" / "pkg" / "mod.py").write_text("again\n")
    assert worktree.snapshot() == full_snapshot(worktree, index_copy(worktree))
    assert called == ["check-ignore"], "a tracked file needs no word from git"


def test_trees_forgotten_to_bound_memory_are_read_again(worktree: Worktree, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("tether.workspace.objects.KEPT_TREES", 2)
    worktree.snapshot()
    for step, path in enumerate(["src/pkg/deep/x.txt", "docs/readme.md", "src/pkg/new.py", "a.py"] * 2):
        (worktree.path / path).write_text(f"step {step}\n")
        before = index_copy(worktree)
        assert worktree.snapshot() == full_snapshot(worktree, before), (step, path)
        writer = worktree._tree_writer
        assert writer is not None and len(writer.trees) <= 2 and set(writer.names) <= set(writer.trees)


def test_a_file_written_in_process_stays_tracked_when_a_new_rule_covers_it(
        worktree: Worktree, monkeypatch: pytest.MonkeyPatch):
    """The index catches up with in-process snapshots before git stages again: to git, a file
    already in a snapshot is tracked, and an ignore rule no longer drops it."""
    worktree.snapshot()
    (worktree.path / "made.txt").write_text("made\n")
    worktree.snapshot()
    assert worktree._memory.index_behind
    (worktree.path / ".gitignore").write_text("*.log\nbuild/\nmade.txt\n")  # a full snapshot next
    (worktree.path / "made.txt").write_text("changed\n")
    tree = worktree.snapshot()
    assert "made.txt" in git(worktree.repo, "-c", "safe.directory=*", "ls-tree", "--name-only", tree).split()
    assert tree == full_snapshot(worktree, index_copy(worktree))


def test_after_a_restore_the_files_it_tracks_stay_tracked(worktree: Worktree):
    """A file a tree tracks though a rule ignores it comes back with a restore, and the next step
    keeps it, as git does: it is tracked again."""
    worktree.snapshot()
    (worktree.path / "notes.tmp").write_text("notes\n")
    worktree.snapshot()
    (worktree.path / ".gitignore").write_text("*.log\nbuild/\n*.tmp\n")
    tracking = worktree.snapshot()
    (worktree.path / "notes.tmp").unlink()
    worktree.snapshot()
    worktree.restore(tracking)
    before = index_copy(worktree)
    tree = worktree.snapshot()
    assert tree == tracking == full_snapshot(worktree, before)


def test_a_folder_swapped_for_a_symlink_is_not_read_through(worktree: Worktree, tmp_path: Path):
    """A tracked file's folder replaced by a link to a folder outside: the file is gone (git says so
    too), and nothing outside enters the tree."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "mod.py").write_text("SECRET from outside\n")
    worktree.snapshot()
    before = index_copy(worktree)
    pkg = worktree.path / "src" / "pkg"
    subprocess.run(["rm", "-rf", str(pkg)], check=True)
    pkg.symlink_to(outside)
    tree = worktree.snapshot()
    assert tree == full_snapshot(worktree, before)
    listing = git(worktree.repo, "-c", "safe.directory=*", "ls-tree", "-r", tree)
    assert "120000" in listing and "src/pkg/mod.py" not in listing
    secret = hashlib.sha1(b"blob 20\0SECRET from outside\n").hexdigest()
    assert subprocess.run(["git", "cat-file", "-e", secret], cwd=worktree.repo).returncode != 0, "read through the link"


@pytest.mark.parametrize("case", ["attributes", "nested repository", "named pipe", "large file"])
def test_where_only_git_can_say_git_stages(worktree: Worktree, monkeypatch: pytest.MonkeyPatch, case: str):
    worktree.snapshot()
    before = index_copy(worktree)
    if case == "attributes":
        (worktree.path / "src" / ".gitattributes").write_text("*.py text eol=crlf\n")
        worktree.snapshot()  # a rule file changed: in full
        before = index_copy(worktree)
        (worktree.path / "src" / "other.py").write_text("a\r\nb\r\n")
    elif case == "nested repository":
        subprocess.run("mkdir inner && cd inner && git init -q && echo x > x && git add x && "
                       "git -c user.email=a@b -c user.name=a commit -qm x", shell=True, cwd=worktree.path, check=True)
    elif case == "named pipe":
        os.mkfifo(worktree.path / "pipe")
        (worktree.path / "a.py").write_text("changed\n")
    else:
        monkeypatch.setattr("tether.workspace.worktree.SNAPSHOT_FILE_LIMIT", 4)
        (worktree.path / "a.py").write_text("more than four bytes\n")
    written = []
    write_changes = Worktree._write_changes
    monkeypatch.setattr(Worktree, "_write_changes",
                        lambda self, changed: written.append(r := write_changes(self, changed)) or r)
    try:
        tree = worktree.snapshot()
    except GitError:  # git refuses a named pipe, as a full snapshot does
        assert case == "named pipe"
        return
    assert written == [None]
    assert tree == full_snapshot(worktree, before)


@pytest.mark.parametrize("setting", [("core.fileMode", "false"), ("core.symlinks", "false"),
                                     ("core.ignoreCase", "true"), ("core.autocrlf", "input")])
def test_settings_that_change_what_git_stores_leave_every_snapshot_to_git(tmp_path: Path, setting: tuple[str, str]):
    worktree = small_worktree(tmp_path, FILES, {".gitignore": "*.log\n"})
    git(worktree.repo, "config", *setting)
    assert worktree._tree_writer is None
    worktree.snapshot()
    (worktree.path / "run.sh").chmod(0o644)
    (worktree.path / "a.py").write_text("x\r\n")
    assert worktree.snapshot() == full_snapshot(worktree, index_copy(worktree))


def test_a_sha256_repository_is_left_to_git(tmp_path: Path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.py").write_text("a\n")
    git(repo, "init", "-q", "--object-format=sha256", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=d@e", "-c", "user.name=d", "commit", "-qm", "base")
    worktree = create_worktree(repo, "run1", git(repo, "rev-parse", "HEAD").strip(), [])
    assert worktree._tree_writer is None
    worktree.snapshot()
    (worktree.path / "a.py").write_text("b\n")
    (worktree.path / "new.py").write_text("new\n")
    tree = worktree.snapshot()
    assert len(tree) == 64 and tree == full_snapshot(worktree, index_copy(worktree))


def test_the_watch_says_it_cannot_answer_when_it_cannot(tmp_path: Path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "f.txt").write_text("x")
    changes = Changes.start(tmp_path)
    assert changes is not None
    assert changes.take() is None  # nothing is known before the first full snapshot
    assert changes.take() == set()
    (tmp_path / "d" / "e" / "g.txt").write_text("y")
    (tmp_path / "f.txt").chmod(0o755)
    assert changes.take() == {"d/e/g.txt", "f.txt"}
    (tmp_path / "d").rename(tmp_path / "moved")  # the watches under it name the old folder
    assert changes.take() is None
    (tmp_path / "moved" / "e" / "h.txt").write_text("z")
    assert changes.take() == {"moved/e/h.txt"}
    os.link(tmp_path / "f.txt", tmp_path / "second")  # a second name: writes through it may go unseen
    assert changes.take() is None
    (tmp_path / "second").unlink()
    assert changes.take() == {"second"}
    (tmp_path / ".gitignore").write_text("*.txt\n")  # every other path may be staged differently now
    assert changes.take() is None
    changes.close()
    assert changes.take() is None


def inotify_fds() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone by now
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
    return count


def test_a_process_keeps_a_few_watches_open_and_the_oldest_falls_back_to_full_snapshots(
        worktree: Worktree, tmp_path: Path):
    from tether.workspace.changes import MAX_LIVE

    worktree.snapshot()
    oldest = worktree.__dict__["_changes"]
    others = []
    for index in range(MAX_LIVE + 2):
        (tmp_path / f"other{index}").mkdir()
        others.append(Changes.start(tmp_path / f"other{index}"))
    assert all(changes is not None for changes in others)
    assert oldest.fd < 0 and others[0].fd < 0 and others[-1].fd >= 0  # the least recently started, closed
    assert inotify_fds() <= MAX_LIVE
    (worktree.path / "a.py").write_text("after\n")
    assert worktree.snapshot() == full_snapshot(worktree)  # the full snapshot, still exact
    for changes in others:
        changes.close()
