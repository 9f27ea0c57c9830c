"""Eval suites: a directory with one folder per task.

    SUITE/<task>/task.toml
        instruction = "..."            # or instruction_file = "instruction.md"
        repo = "repo"                  # a folder, or a git bundle (repo.bundle)
        remove = [".meta"]             # paths deleted before the agent sees the repository
        visible_check = "python -m pytest -q visible_test.py"   # the check the agent may run
        hidden_check = "python -m pytest -q full_test.py"       # run on the delivered work afterwards
        hidden = "hidden"              # files laid over the delivered work before the hidden check
        restore = ["visible_test.py"]  # files put back as the agent first saw them before scoring
        [timeouts]
        agent_s = 300                  # caps the run's wall-clock budget
        check_s = 60                   # each scoring check
    SUITE/<task>/repo/...  SUITE/<task>/hidden/...

An agent that edits the tests gains nothing: the files in `restore` and `hidden` are put back
before the checks that score it."""

from __future__ import annotations

import fnmatch
import shutil
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tether.errors import TetherError
from tether.policy.load import describe_errors
from tether.workspace.git import git

TASK_FILE = "task.toml"


class SuiteError(TetherError):
    """A suite or task that cannot be used; the message names the file and the key."""


class Timeouts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    agent_s: float = Field(600, gt=0)
    check_s: float = Field(120, gt=0)


class TaskSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = ""  # the folder's name
    folder: Path = Path()
    instruction: str = ""
    instruction_file: str | None = None
    repo: str = "repo"
    remove: list[str] = Field(default_factory=list)
    visible_check: str = Field(min_length=1)
    hidden_check: str = Field(min_length=1)
    hidden: str | None = None
    restore: list[str] = Field(default_factory=list)
    timeouts: Timeouts = Field(default_factory=Timeouts)

    @model_validator(mode="after")
    def _one_instruction(self) -> TaskSpec:
        if bool(self.instruction.strip()) == bool(self.instruction_file):
            raise ValueError("give exactly one of instruction and instruction_file")
        return self

    def text(self) -> str:
        if self.instruction_file is None:
            return self.instruction
        return _inside(self.folder, self.instruction_file, "instruction_file").read_text(encoding="utf-8")


def _inside(folder: Path, relative: str, key: str) -> Path:
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise SuiteError(f"{folder / TASK_FILE}: {key} {relative!r} points outside the task folder")
    if not path.exists():
        raise SuiteError(f"{folder / TASK_FILE}: {key} {relative!r} does not exist")
    return path


def load_task(folder: Path) -> TaskSpec:
    path = folder / TASK_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path}: invalid TOML: {exc}") from exc
    try:
        task = TaskSpec.model_validate({**data, "name": folder.name, "folder": folder.resolve()})
    except ValidationError as exc:
        raise SuiteError("\n".join(f"{path}: {problem}" for problem in describe_errors(exc))) from exc
    _inside(folder, task.repo, "repo")
    if task.hidden is not None:
        _inside(folder, task.hidden, "hidden")
    task.text()
    return task


def load_suite(suite: Path, pattern: str | None = None) -> list[TaskSpec]:
    """The suite's tasks in name order, those matching the glob `pattern` (comma-separated globs)."""
    if not suite.is_dir():
        raise SuiteError(f"{suite}: not a directory")
    folders = sorted(p for p in suite.iterdir() if (p / TASK_FILE).is_file())
    if not folders:
        raise SuiteError(f"{suite}: no task folders (each holds a {TASK_FILE})")
    if pattern:
        globs = [g.strip() for g in pattern.split(",") if g.strip()]
        folders = [f for f in folders if any(fnmatch.fnmatchcase(f.name, g) for g in globs)]
        if not folders:
            raise SuiteError(f"{suite}: no task matches {pattern!r}")
    return [load_task(folder) for folder in folders]


def prepare_repo(task: TaskSpec, dest: Path) -> Path:
    """The repository the agent starts from, as a fresh git repository at `dest` (kept if there)."""
    if (dest / ".git").is_dir():
        return dest
    source = task.folder / task.repo
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if source.is_file():
        git(source.parent, "clone", "--quiet", str(source), str(tmp))
    else:
        shutil.copytree(source, tmp, ignore=shutil.ignore_patterns(".git"))
        git(tmp, "init", "--quiet", "-b", "main")
    for relative in task.remove:
        target = (tmp / relative).resolve()
        if not target.is_relative_to(tmp.resolve()):
            raise SuiteError(f"{task.folder / TASK_FILE}: remove {relative!r} points outside the repository")
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    git(tmp, "add", "-A")
    if git(tmp, "status", "--porcelain").strip():
        git(tmp, "commit", "--quiet", "-m", f"eval task {task.name}")
    tmp.rename(dest)  # a half-prepared repository is never mistaken for a ready one
    return dest
