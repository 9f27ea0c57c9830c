"""The files a task names, shown with the task (`[agent] show_named_files`). A person handed "make
the tests in line_up_test.py pass" opens line_up_test.py first; a small model seldom thinks to, and
writes against an API it has to guess. So the harness shows them up front: each file the task names
that is a regular file of the base commit (read from git, never from the worktree), small enough to
show, and not already quoted in the task. What was shown is recorded with the run (RunStarted.context),
so the log holds exactly what the model read."""

from __future__ import annotations

import re
from pathlib import Path

from tether.workspace.git import GitError, git

MAX_FILE_CHARS = 8_000  # a larger file is left for the agent to read (or not) with its tools
MAX_CHARS = 12_000  # all files shown together; the local models' context is 8192 tokens
# A path as tasks write them: a word with a file extension, maybe in a folder, maybe in backticks.
_PATH = re.compile(r"(?<![\w./-])((?:[\w.-]+/)*[\w-]+\.[A-Za-z][A-Za-z0-9]*)(?![\w/-])")
_REGULAR = ("100644", "100755")


def named_paths(task: str) -> list[str]:
    """Paths the task mentions, in order of first mention, without repeats or `..`."""
    seen: dict[str, None] = {}
    for match in _PATH.finditer(task):
        path = match.group(1).removeprefix("./")
        if ".." not in path.split("/"):
            seen.setdefault(path, None)
    return list(seen)


def _small_regular_blobs(repo: Path, commit: str, paths: list[str]) -> dict[str, str]:
    """{path: blob id} of those paths that are regular files (not links, not folders) at `commit`,
    no larger than MAX_FILE_CHARS bytes."""
    if not paths:
        return {}
    listing = git(repo, "ls-tree", "-z", "--long", commit, "--", *paths)
    blobs: dict[str, str] = {}
    for entry in filter(None, listing.split("\0")):
        meta, path = entry.split("\t", 1)
        mode, kind, blob, size = meta.split()
        if kind == "blob" and mode in _REGULAR and int(size) <= MAX_FILE_CHARS:
            blobs[path] = blob
    return blobs


def named_files_context(repo: Path, commit: str, task: str) -> str:
    """The text shown after the task: each named file's content in a fence ("" when none qualifies)."""
    paths = named_paths(task)
    try:
        blobs = _small_regular_blobs(repo, commit, paths)
    except GitError:
        return ""
    parts: list[str] = []
    total = 0
    for path in paths:
        if path not in blobs:
            continue
        try:
            text = git(repo, "cat-file", "blob", blobs[path])
        except (GitError, UnicodeDecodeError):  # gone, or not text
            continue
        if "\0" in text or total + len(text) > MAX_CHARS or text.strip() in task:
            continue
        total += len(text)
        fence = "````" if "```" in text else "```"
        parts.append(f"{path}:\n{fence}\n{text.rstrip()}\n{fence}")
    if not parts:
        return ""
    return "The files the task names, as they are now:\n\n" + "\n\n".join(parts)


def with_context(task: str, context: str | None) -> str:
    return f"{task}\n\n{context}" if context else task
