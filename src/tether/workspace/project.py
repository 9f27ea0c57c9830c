"""The project's own environment: what its checks and commands run with, never Tether's.

A plan says how to set the environment up (commands run in the sandbox, with the network only if
allowed), where it lives and what the sandbox gets from it (PATH entries, the folders the project
imports from, folders laid into the worktree). It comes from the policy's `[environment]` or, when
that has no `setup`, from the repository's layout, and it is always read from a commit a person
vouched for (the run's base), never from a worktree the agent writes: `CommitFiles` reads git's
objects. The environment is built once per digest of the plan and of the files it depends on
(manifests and lockfiles), in a cache folder outside every worktree (see provision.py), and mounted
read-only into each run's sandbox at the same path; the project's own code is never imported from
it, so commands always import the worktree's code (PYTHONPATH for Python)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from tether.errors import TetherError
from tether.policy.schema import EnvironmentPolicy
from tether.workspace.git import GitError, git, git_bytes

ENV_VARIABLE = "TETHER_ENV"  # the environment's folder, as setup commands see it
_PYTHON_MANIFESTS = ("pyproject.toml", "setup.py", "setup.cfg", "uv.lock", "poetry.lock", "Pipfile.lock")
_REQUIREMENTS = ("requirements.txt", "requirements-dev.txt", "requirements-test.txt", "requirements_dev.txt",
                 "requirements_test.txt", "dev-requirements.txt", "test-requirements.txt")
_TEST_GROUPS = ("test", "tests", "testing", "dev")
_NODE_LOCKS = {"pnpm-lock.yaml": "pnpm", "package-lock.json": "npm", "yarn.lock": "yarn"}
_LOCKS = ("uv.lock", "poetry.lock")  # exact pins, given to pip as constraints
# Every file a detected plan reads: one the agent writes is never read, and says so.
MANIFESTS = frozenset({*_PYTHON_MANIFESTS, *_REQUIREMENTS, "package.json", *_NODE_LOCKS, "pnpm-workspace.yaml",
                       ".npmrc"})
CONSTRAINTS = "constraints.txt"  # in the environment's folder, written by Tether from a lock
NODE_TOOLS = "tools"  # in the environment's folder: the package manager a lockfile names
GENERATED = "generated"  # in the environment's folder: files the build wrote into the source tree
MANIFEST_LIMIT = 4 << 20


@dataclass(frozen=True)
class CommitFiles:
    """The files of one commit, read from git's objects: nothing the agent wrote can be among them."""
    repo: Path
    commit: str

    @cached_property
    def top(self) -> dict[str, str]:
        """Top-level entries: name -> kind (blob, tree, commit)."""
        entries: dict[str, str] = {}
        for record in git(self.repo, "ls-tree", "-z", self.commit).split("\0"):
            if record:
                meta, name = record.split("\t", 1)
                entries[name] = meta.split(" ")[1]
        return entries

    def has(self, name: str) -> bool:
        return self.top.get(name) == "blob"

    def read(self, name: str) -> bytes | None:
        """A top-level file's bytes (None when it is absent, not a plain file, or over the limit)."""
        if not self.has(name):
            return None
        try:
            size = int(git(self.repo, "cat-file", "-s", f"{self.commit}:{name}").strip())
            if size > MANIFEST_LIMIT:
                return None
            return git_bytes(self.repo, "cat-file", "blob", f"{self.commit}:{name}")
        except (GitError, ValueError):
            return None

    def text(self, name: str) -> str | None:
        data = self.read(name)
        try:
            return data.decode("utf-8") if data is not None else None
        except UnicodeDecodeError:
            return None

    @cached_property
    def src_packages(self) -> bool:
        """Whether `src/` holds packages (a src layout)."""
        if self.top.get("src") != "tree":
            return False
        listing = git(self.repo, "ls-tree", "-r", "-z", "--name-only", f"{self.commit}:src")
        return any(name.count("/") == 1 and name.endswith("/__init__.py") for name in listing.split("\0"))


@dataclass(frozen=True)
class Plan:
    kind: str  # "python", "node", "declared" (the policy's own setup) or "none"
    setup: list[str]
    path: list[str]  # folders in the environment to put first on PATH
    mounts: dict[str, str]  # worktree path -> folder in the environment, laid in read-only
    inputs: list[str]  # files of the repository whose content the environment depends on
    python_path: list[str] = field(default_factory=list)  # worktree folders the project imports from
    note: str = ""  # what was detected, in a sentence
    files: dict[str, str] = field(default_factory=dict)  # written into the environment's folder before setup

    def digest(self, source: CommitFiles) -> str:
        digest = hashlib.sha256()
        digest.update(json.dumps([self.kind, self.setup, self.path, self.mounts, self.files, sys.version_info[:2],
                                  sys.base_prefix]).encode())
        for name in sorted(self.inputs):
            data = source.read(name)
            digest.update(name.encode() + b"\0" + (data if data is not None else b"-") + b"\0")
        return digest.hexdigest()[:24]


@dataclass(frozen=True)
class ProjectEnv:
    """A prepared environment, as the sandbox uses it."""
    folder: Path
    path: list[Path]
    python_path: list[str]  # workdir-relative folders the project imports from ("." is the workdir)
    mounts: dict[str, Path]  # workdir-relative target -> folder to lay there, read-only
    generated: list[str] = field(default_factory=list)  # files in folder/generated to lay into each workdir


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.path.realpath(Path(base) / "tether" / "envs"))


def plan_for(policy: EnvironmentPolicy, source: CommitFiles) -> Plan:
    """The policy's plan when it names setup commands, otherwise what the layout suggests."""
    if policy.setup is not None:
        return Plan("declared", list(policy.setup), list(policy.path), dict(policy.mounts),
                    list(policy.inputs) or _found(source, [*_PYTHON_MANIFESTS, *_REQUIREMENTS, "package.json",
                                                           *_NODE_LOCKS]),
                    python_path=_python_path(source), note="setup from [environment]")
    return detect(source)


def detect(source: CommitFiles) -> Plan:
    node = next((tool for lock, tool in _NODE_LOCKS.items() if source.has(lock)), None)
    if node is None and source.has("package.json"):
        node = "npm"
    if node is not None:
        return _node_plan(source, node)
    manifests = _found(source, [*_PYTHON_MANIFESTS, *_REQUIREMENTS])
    if manifests or any(name.endswith(".py") and kind == "blob" for name, kind in source.top.items()) \
            or source.top.get("src") == "tree":
        return _python_plan(source, manifests)
    return Plan("none", [], [], {}, [], note="no known project layout: commands use the system's tools")


def _found(source: CommitFiles, names: list[str]) -> list[str]:
    return [name for name in names if source.has(name)]


def _python_path(source: CommitFiles) -> list[str]:
    return ["src", "."] if source.src_packages else ["."]


def _python_requirements(source: CommitFiles) -> tuple[list[str], list[str]]:
    """(requirement strings, how they were found) from pyproject.toml: the project's dependencies
    and its test extras or dependency groups; the project itself is not installed."""
    text = source.text("pyproject.toml")
    if text is None:
        return [], []
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return [], ["pyproject.toml does not parse"]
    project = data.get("project") or {}
    wanted = [str(item) for item in project.get("dependencies") or []]
    sources = ["[project] dependencies"] if wanted else []
    extras = project.get("optional-dependencies") or {}
    groups = data.get("dependency-groups") or {}
    for name in _TEST_GROUPS:
        if isinstance(extras.get(name), list):
            wanted += [str(item) for item in extras[name]]
            sources.append(f"extra {name!r}")
        if isinstance(groups.get(name), list):
            wanted += _group(groups, name, set())
            sources.append(f"group {name!r}")
    return wanted, sources


def _group(groups: dict, name: str, seen: set[str]) -> list[str]:
    if name in seen:
        return []
    seen.add(name)
    items: list[str] = []
    for item in groups.get(name) or []:
        if isinstance(item, str):
            items.append(item)
        elif isinstance(item, dict) and "include-group" in item:
            items += _group(groups, str(item["include-group"]), seen)
    return items


def lock_pins(name: str, text: str) -> dict[str, str]:
    """The exact versions a uv.lock or poetry.lock pins, for pip's constraints: one version per
    package from a package index (a package locked at several versions for different platforms, or
    from a path, a URL or git, is left to pip)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return {}
    seen: dict[str, set[str]] = {}
    for package in data.get("package") or []:
        if not isinstance(package, dict) or not package.get("name") or not package.get("version"):
            continue
        source = package.get("source")
        if name == "uv.lock" and not (isinstance(source, dict) and "registry" in source):
            continue  # the project itself (editable, virtual), a path, a URL or git
        if name == "poetry.lock" and isinstance(source, dict) and source.get("type") not in (None, "legacy"):
            continue
        canonical = re.sub(r"[-_.]+", "-", str(package["name"])).lower()
        seen.setdefault(canonical, set()).add(str(package["version"]))
    return {package: versions.pop() for package, versions in sorted(seen.items()) if len(versions) == 1}


def _python_plan(source: CommitFiles, manifests: list[str]) -> Plan:
    pip = f'"${ENV_VARIABLE}/venv/bin/python" -m pip install --quiet --disable-pip-version-check'
    setup = [f'python3 -m venv "${ENV_VARIABLE}/venv"', f"{pip} --upgrade pip"]
    wanted, sources = _python_requirements(source)
    files: dict[str, str] = {}
    lock = next((name for name in _LOCKS if source.has(name)), None)
    pins = lock_pins(lock, source.text(lock) or "") if lock else {}
    if pins:
        files[CONSTRAINTS] = "".join(f"{package}=={version}\n" for package, version in pins.items())
        pip += f' -c "${ENV_VARIABLE}/{CONSTRAINTS}"'
        sources.append(f"{len(pins)} pins from {lock}")
    requirement_files = _found(source, list(_REQUIREMENTS))
    if requirement_files:
        setup.append(f"{pip} " + " ".join(f"-r {name}" for name in requirement_files))
        sources += requirement_files
    packages = [*dict.fromkeys([*wanted, "pytest"])]
    setup.append(f"{pip} " + " ".join(_quote(item) for item in packages))
    if _found(source, ["pyproject.toml", "setup.py"]):
        # The project's metadata (importlib.metadata.version, entry points) and the files its build
        # generates (a version file), not its code: the worktree's code comes first on PYTHONPATH.
        # Optional: a project that will not build still runs.
        setup.append(f"{pip} --no-deps . || echo 'tether: the project itself could not be installed; "
                     "its metadata will be missing'")
    found = ", ".join(sources) or "no declared dependencies"
    return Plan("python", setup, ["venv/bin"], {}, manifests, python_path=_python_path(source),
                note=f"Python ({found}; pytest), in a virtualenv; the worktree's code on PYTHONPATH", files=files)


def _node_plan(source: CommitFiles, tool: str) -> Plan:
    manifests = _found(source, ["package.json", *_NODE_LOCKS, "pnpm-workspace.yaml", ".npmrc"])
    copy = f'cp {" ".join(manifests)} "${ENV_VARIABLE}/" && cd "${ENV_VARIABLE}"'
    if tool == "npm":
        install = "npm ci --no-audit --no-fund" if "package-lock.json" in manifests else "npm install"
        return Plan("node", [f"{copy} && {install}"], ["node_modules/.bin"], {"node_modules": "node_modules"},
                    manifests, note=f"Node (npm from {', '.join(manifests)}), node_modules laid into the worktree")
    # The project's scripts call the package manager by name (`pnpm run build && ...`): it is
    # installed into the environment, next to the project's packages, and put on the sandbox's PATH.
    version = {"pnpm": f"pnpm@{_pnpm_version(source)}", "yarn": "yarn@1"}[tool]
    tools = f'npm install --no-audit --no-fund --no-save --prefix "${ENV_VARIABLE}/{NODE_TOOLS}" {version}'
    install = {"pnpm": "pnpm install --frozen-lockfile --config.manage-package-manager-versions=false",
               "yarn": "yarn install --frozen-lockfile"}[tool]  # the lock names the version; no second download
    return Plan("node", [f'{tools} && export PATH="${ENV_VARIABLE}/{NODE_TOOLS}/node_modules/.bin:$PATH" && '
                         f"{copy} && {install}"],
                ["node_modules/.bin", f"{NODE_TOOLS}/node_modules/.bin"], {"node_modules": "node_modules"},
                manifests, note=f"Node ({version} from {', '.join(manifests)}, on PATH), node_modules laid "
                "into the worktree")


def _pnpm_version(source: CommitFiles) -> str:
    """The pnpm that `packageManager` names, exactly (pnpm itself would otherwise fetch it inside the
    sandbox, without the network); its major alone when the rest is not a plain version; else 9."""
    try:
        manager = json.loads(source.text("package.json") or "{}").get("packageManager") or ""
    except (json.JSONDecodeError, AttributeError):
        manager = ""
    version = manager.removeprefix("pnpm@").split("+")[0] if isinstance(manager, str) and \
        manager.startswith("pnpm@") else ""
    if re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?", version):
        return version
    return version.split(".")[0] if re.fullmatch(r"\d+", version.split(".")[0]) else "9"


def _quote(item: str) -> str:
    return "'" + item.replace("'", "'\\''") + "'"


def prepare(plan: Plan, source: CommitFiles, build: Callable[[Path], list[str]]) -> tuple[ProjectEnv | None, bool]:
    """(the environment, whether it was built now). A cached one is reused; otherwise `build`
    sets it up in its folder (built where it will stay: virtualenvs hold absolute paths) and says
    which generated files it kept, under a lock that makes a concurrent run of the same digest
    wait and then reuse it. `build` raises SetupFailed; nothing half-built is kept."""
    if plan.kind == "none":
        return None, False
    folder = cache_root() / plan.digest(source)
    folder.parent.mkdir(parents=True, exist_ok=True)
    built = False
    with folder.with_name(folder.name + ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = folder / ".complete"
        if not marker.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            try:
                for name, content in plan.files.items():
                    (folder / name).write_text(content)
                generated = build(folder)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            marker.write_text(json.dumps({"plan": plan.setup, "note": plan.note, "generated": generated}))
            built = True
        os.utime(marker)  # its last use, for tether gc --envs
        try:
            generated = list(json.loads(marker.read_text()).get("generated") or [])
        except (json.JSONDecodeError, AttributeError):
            generated = []
    return ProjectEnv(folder, [folder / entry for entry in plan.path], list(plan.python_path),
                      {target: folder / source_ for target, source_ in plan.mounts.items()}, generated), built


class SetupFailed(TetherError):
    def __init__(self, command: str, tail: str, note: str = ""):
        super().__init__(f"environment setup failed at `{command}`:\n{tail}")
        self.command = command
        self.tail = tail
        self.note = note  # what the plan was, in a sentence
