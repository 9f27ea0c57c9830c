"""The project's own environment: what its checks and commands run with, never Tether's.

A plan says how to set the environment up (commands run in the sandbox, with the network only if
allowed), where it lives and what the sandbox gets from it (PATH entries, variables, folders laid
into the worktree). It comes from the policy's `[environment]` or, when that has no `setup`, from
the repository's layout. The environment is built once per digest of the plan and of the files
it depends on (manifests and lockfiles), in a cache folder outside every worktree, and mounted
read-only into each run's sandbox at the same path; the project's own code is never installed
into it, so commands always import the worktree's code (PYTHONPATH for Python)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tether.errors import TetherError
from tether.policy.schema import EnvironmentPolicy

ENV_VARIABLE = "TETHER_ENV"  # the environment's folder, as setup commands see it
_PYTHON_MANIFESTS = ("pyproject.toml", "setup.py", "setup.cfg", "uv.lock", "poetry.lock", "Pipfile.lock")
_REQUIREMENTS = ("requirements.txt", "requirements-dev.txt", "requirements-test.txt", "requirements_dev.txt",
                 "requirements_test.txt", "dev-requirements.txt", "test-requirements.txt")
_TEST_GROUPS = ("test", "tests", "testing", "dev")
_NODE_LOCKS = {"pnpm-lock.yaml": "pnpm", "package-lock.json": "npm", "yarn.lock": "yarn"}


@dataclass(frozen=True)
class Plan:
    kind: str  # "python", "node", "declared" (the policy's own setup) or "none"
    setup: list[str]
    path: list[str]  # folders in the environment to put first on PATH
    mounts: dict[str, str]  # worktree path -> folder in the environment, laid in read-only
    inputs: list[str]  # files of the repository whose content the environment depends on
    python_path: list[str] = field(default_factory=list)  # worktree folders the project imports from
    note: str = ""  # what was detected, in a sentence

    def digest(self, worktree: Path) -> str:
        digest = hashlib.sha256()
        digest.update(json.dumps([self.kind, self.setup, self.path, self.mounts, sys.version_info[:2],
                                  sys.base_prefix]).encode())
        for name in sorted(self.inputs):
            file = worktree / name
            digest.update(name.encode() + b"\0" + (file.read_bytes() if file.is_file() else b"-") + b"\0")
        return digest.hexdigest()[:24]


@dataclass(frozen=True)
class ProjectEnv:
    """A prepared environment, as the sandbox uses it."""
    folder: Path
    path: list[Path]
    variables: dict[str, str]
    mounts: dict[str, Path]  # worktree-relative target -> folder to lay there, read-only


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tether" / "envs"


def plan_for(policy: EnvironmentPolicy, worktree: Path) -> Plan:
    """The policy's plan when it names setup commands, otherwise what the layout suggests."""
    if policy.setup is not None:
        return Plan("declared", list(policy.setup), list(policy.path), dict(policy.mounts),
                    list(policy.inputs) or _found(worktree, [*_PYTHON_MANIFESTS, *_REQUIREMENTS, "package.json",
                                                             *_NODE_LOCKS]),
                    python_path=_python_path(worktree), note="setup from [environment]")
    return detect(worktree)


def detect(worktree: Path) -> Plan:
    node = next((tool for lock, tool in _NODE_LOCKS.items() if (worktree / lock).is_file()), None)
    if node is None and (worktree / "package.json").is_file():
        node = "npm"
    if node is not None:
        return _node_plan(worktree, node)
    manifests = _found(worktree, [*_PYTHON_MANIFESTS, *_REQUIREMENTS])
    if manifests or any(worktree.glob("*.py")) or (worktree / "src").is_dir():
        return _python_plan(worktree, manifests)
    return Plan("none", [], [], {}, [], note="no known project layout: commands use the system's tools")


def _found(worktree: Path, names: list[str]) -> list[str]:
    return [name for name in names if (worktree / name).is_file()]


def _python_path(worktree: Path) -> list[str]:
    src = worktree / "src"
    has_src_packages = src.is_dir() and any(child.is_dir() and (child / "__init__.py").exists()
                                            for child in src.iterdir())
    return ["src", "."] if has_src_packages else ["."]


def _python_requirements(worktree: Path) -> tuple[list[str], list[str]]:
    """(requirement strings, how they were found) from pyproject.toml: the project's dependencies
    and its test extras or dependency groups; the project itself is not installed."""
    pyproject = worktree / "pyproject.toml"
    if not pyproject.is_file():
        return [], []
    try:
        data = tomllib.loads(pyproject.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
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


def _python_plan(worktree: Path, manifests: list[str]) -> Plan:
    pip = f'"${ENV_VARIABLE}/venv/bin/python" -m pip install --quiet --disable-pip-version-check'
    setup = [f'python3 -m venv "${ENV_VARIABLE}/venv"', f"{pip} --upgrade pip"]
    wanted, sources = _python_requirements(worktree)
    requirement_files = _found(worktree, list(_REQUIREMENTS))
    if requirement_files:
        setup.append(f"{pip} " + " ".join(f"-r {name}" for name in requirement_files))
        sources += requirement_files
    packages = [*dict.fromkeys([*wanted, "pytest"])]
    setup.append(f"{pip} " + " ".join(_quote(item) for item in packages))
    if _found(worktree, ["pyproject.toml", "setup.py"]):
        # The project's metadata (importlib.metadata.version, entry points), not its code: the
        # worktree's code comes first on PYTHONPATH. Optional: a project that will not build still runs.
        setup.append(f"{pip} --no-deps . || echo 'tether: the project itself could not be installed; "
                     "its metadata will be missing'")
    found = ", ".join(sources) or "no declared dependencies"
    return Plan("python", setup, ["venv/bin"], {}, manifests, python_path=_python_path(worktree),
                note=f"Python ({found}; pytest), in a virtualenv; the worktree's code on PYTHONPATH")


def _node_plan(worktree: Path, tool: str) -> Plan:
    manifests = _found(worktree, ["package.json", *_NODE_LOCKS, "pnpm-workspace.yaml", ".npmrc"])
    copy = f'cp {" ".join(manifests)} "${ENV_VARIABLE}/" && cd "${ENV_VARIABLE}"'
    install = {"npm": "npm ci --no-audit --no-fund" if "package-lock.json" in manifests else "npm install",
               "pnpm": f"npx --yes pnpm@{_pnpm_major(worktree)} install --frozen-lockfile "
                "--config.manage-package-manager-versions=false",  # the lock names it; no second download
               "yarn": "npx --yes yarn@1 install --frozen-lockfile"}[tool]
    return Plan("node", [f"{copy} && {install}"], ["node_modules/.bin"], {"node_modules": "node_modules"},
                manifests, note=f"Node ({tool} from {', '.join(manifests)}), node_modules laid into the worktree")


def _pnpm_major(worktree: Path) -> str:
    try:
        manager = json.loads((worktree / "package.json").read_text()).get("packageManager") or ""
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        manager = ""
    version = manager.removeprefix("pnpm@") if manager.startswith("pnpm@") else ""
    return version.split(".")[0] if version[:1].isdigit() else "9"


def _quote(item: str) -> str:
    return "'" + item.replace("'", "'\\''") + "'"


SetupRunner = Callable[[str, Path], tuple[bool, str]]  # (command, environment folder) -> (ok, output tail)


def prepare(plan: Plan, worktree: Path, run_setup: SetupRunner) -> tuple[ProjectEnv | None, bool]:
    """(the environment, whether it was built now). A cached one is reused; otherwise the setup
    commands run one by one in its folder (built where it will stay: virtualenvs hold absolute
    paths), under a lock that makes a concurrent run of the same digest wait and then reuse it.
    Raises SetupFailed with the command and the tail of its output; nothing half-built is kept."""
    if plan.kind == "none":
        return None, False
    folder = cache_root() / plan.digest(worktree)
    folder.parent.mkdir(parents=True, exist_ok=True)
    built = False
    with folder.with_name(folder.name + ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".complete").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            try:
                for command in plan.setup:
                    ok, tail = run_setup(command, folder)
                    if not ok:
                        raise SetupFailed(command, tail)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            (folder / ".complete").write_text(json.dumps({"plan": plan.setup, "note": plan.note}))
            built = True
        os.utime(folder / ".complete")  # its last use, for tether gc --envs
    python_path = os.pathsep.join(str(worktree / entry) if entry != "." else str(worktree)
                                  for entry in plan.python_path)
    return ProjectEnv(folder, [folder / entry for entry in plan.path],
                      {"PYTHONPATH": python_path} if python_path else {},
                      {target: folder / source for target, source in plan.mounts.items()}), built


class SetupFailed(TetherError):
    def __init__(self, command: str, tail: str):
        super().__init__(f"environment setup failed at `{command}`:\n{tail}")
        self.command = command
        self.tail = tail
