"""Run one shell command for the agent: bubblewrap (read-only system, writable worktree, private
/tmp, no network, no capabilities, never root on the host), resource limits, a timeout, a cap on
the bytes a command may write, and an environment built from an allow-list."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tether.errors import TetherError
from tether.paths import tether_dir
from tether.policy.schema import SandboxPolicy
from tether.workspace import limits
from tether.workspace.agent_git import agent_git
from tether.workspace.environment import sandbox_environment
from tether.workspace.git import common_dir, git_env
from tether.workspace.identity import account_files, drops_root, hand_over, sandbox_uid
from tether.workspace.project import ENV_VARIABLE, ProjectEnv, cache_root
from tether.workspace.worktree import registered_git_dir

OUTPUT_HEAD = 4_000
OUTPUT_TAIL = 12_000
_SYSTEM_DIRS = ("/usr", "/etc", "/opt")
_SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Kernel interfaces that act on the host whatever the namespace: read-only or hidden in any case.
_PROC_MASKED = ("/proc/sysrq-trigger", "/proc/kcore", "/proc/kallsyms", "/proc/timer_list")
_WATCH_INTERVAL_S = 0.05


class SandboxUnavailable(TetherError):
    pass


class MountRefused(TetherError):
    """A folder or file the sandbox would show is not what it must be (a symlink on its way, or
    outside the folder it belongs to): nothing is run."""


def require_sandbox(policy: SandboxPolicy) -> None:
    if policy.mode != "bwrap":
        return
    if shutil.which("bwrap") is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed, so commands cannot be sandboxed. Install it "
            "(apt-get install bubblewrap) or set [sandbox] mode = \"none\" in the policy."
        )
    if drops_root() and shutil.which("setpriv") is None:
        raise SandboxUnavailable(
            "Tether runs as root, and without setpriv (util-linux) the agent's commands would run as "
            "root on the host. Install util-linux, or run Tether as an unprivileged user."
        )


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str
    output_digest: str
    duration_s: float
    timed_out: bool
    truncated: bool
    write_limited: bool = False  # killed for writing more than [sandbox] max_step_write_mb


@dataclass
class Sandbox:
    """`workdir` is writable; `read_only` folders are visible; `frozen` files inside `workdir` are
    read-only; `overlays` put a file Tether made over a visible one (a git config without its
    credentials). `judging`: the command is a check whose verdict counts, so the interpreter's
    start-up hooks and bytecode caches in the folder are not trusted (see `_judging_env`)."""
    policy: SandboxPolicy
    workdir: Path
    network: bool = False
    read_only: list[Path] = field(default_factory=list)
    frozen: list[Path] = field(default_factory=list)
    overlays: dict[Path, Path] = field(default_factory=dict)
    project: ProjectEnv | None = None  # the project's environment, mounted read-only
    building: Path | None = None  # an environment being set up: writable, and the only one
    writable: list[Path] = field(default_factory=list)  # more folders the command may write (an agent's home)
    judging: bool = False

    def __post_init__(self) -> None:
        require_sandbox(self.policy)
        self.workdir = Path(os.path.realpath(self.workdir))
        self.env, self.dropped_env = _sandbox_env(self.policy, self.project, self.building, self.workdir,
                                                  self.judging)
        self.as_user = self.policy.mode == "bwrap" and drops_root()
        self.uid = sandbox_uid(self.workdir)
        if self.as_user:
            hand_over(self.workdir, self.uid)
            if self.building is not None:
                hand_over(self.building, self.uid)
            for folder in self.writable:
                hand_over(folder, self.uid)
        if self.policy.mode == "bwrap":
            self._bwrap_args()  # refuse a sandbox that cannot be made before anything runs in it

    def describe(self) -> dict[str, object]:
        return {
            "mode": self.policy.mode,
            "network": self.network,
            "user": f"{self.uid}:{self.uid}" if self.as_user else str(os.geteuid()),
            "memory_mb": self.policy.memory_mb,
            "tmp_mb": self.policy.tmp_mb,
            "cpu_s": self.policy.cpu_s,
            "max_procs": self.policy.max_procs,
            "max_step_write_mb": self.policy.max_step_write_mb,
            "limits": limits.describe(self.as_user),
            "env_passed": sorted(self.env),
            "env_dropped": self.dropped_env,
        }

    def argv(self, command: str) -> list[str]:
        shell = ["/bin/bash", "-c", command]
        if self.policy.mode == "none":
            return shell
        if self.as_user:  # bwrap mounts as root; the command itself runs as the run's user, with no way back
            shell = ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
                     "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", *shell]
        # Made for every command: what it checks (mount sources, mount points) the last command may
        # have changed.
        return [*self._bwrap_args(), *shell]

    def _bwrap_args(self) -> list[str]:
        args = ["bwrap", "--die-with-parent", "--new-session"]
        if self.as_user:
            # No user namespace: in one, root would map to root and setpriv could not leave it.
            args += ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
            args += [] if self.network else ["--unshare-net"]
            # setpriv needs these to leave root (and to reach a 0700 worktree first); it drops them all.
            args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                     "--cap-add", "CAP_SETPCAP", "--cap-add", "CAP_DAC_READ_SEARCH"]
        else:
            args += ["--unshare-all", *(["--share-net"] if self.network else []), "--cap-drop", "ALL"]
        # bwrap covers /proc/sys only when the folder itself is writable; its files are, for root.
        args += ["--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys"]
        for path in _PROC_MASKED:
            if os.path.exists(path):
                args += ["--ro-bind", "/dev/null", path]
        tmp_size = str(self.policy.tmp_mb << 20)
        args += ["--dev", "/dev", "--perms", "1777", "--size", tmp_size, "--tmpfs", "/tmp",
                 "--perms", "1777", "--size", tmp_size, "--tmpfs", "/dev/shm"]  # multiprocessing needs it
        binds: list[tuple[str, str, str]] = []  # (option, source, destination)
        bound: list[Path] = []
        for path in _SYSTEM_LINKS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                binds.append(("--ro-bind", path, path))
                bound.append(Path(path))
        # The system, the caller's toolchain and the policy's own paths: named by people, resolved.
        for path in [*map(Path, _SYSTEM_DIRS), *_toolchain_dirs(), *map(Path, self.policy.ro_paths),
                     *self.read_only]:
            resolved = path.resolve()
            if resolved.is_dir() and not any(resolved.is_relative_to(b) for b in bound):
                binds.append(("--ro-bind", str(resolved), str(resolved)))
                bound.append(resolved)
        # Folders Tether made (their own paths resolved: a parent may be a link a person made).
        workdir = str(self.workdir)
        if self.project is not None:
            binds.append(("--ro-bind", os.path.realpath(self.project.folder), os.path.realpath(self.project.folder)))
        if self.building is not None:
            binds.append(("--bind", os.path.realpath(self.building), os.path.realpath(self.building)))
        binds += [("--bind", os.path.realpath(folder), os.path.realpath(folder)) for folder in self.writable]
        binds.append(("--bind", workdir, workdir))
        if self.judging:
            shadow = str(_shadow_folder())
            binds.append(("--ro-bind", shadow, shadow))
        # What a command could have written: checked, as in `_real` and `_real_file`.
        for target, source in (self.project.mounts if self.project is not None else {}).items():
            # The source must be the environment's own folder, no link on its way (a postinstall
            # that makes node_modules a link to / would otherwise show the host's root).
            if not os.path.lexists(source):
                continue
            real_source = _real(source, Path(os.path.realpath(self.project.folder)))  # type: ignore[union-attr]
            binds.append(("--ro-bind", real_source, mount_point(self.workdir, target)))
        for path in self.frozen:  # after the worktree's bind, so that they lie over it
            if os.path.lexists(path):
                binds.append(("--ro-bind", _real_file(path, self.workdir), str(path)))
        binds += [("--ro-bind", os.path.realpath(source), str(target)) for target, source in self.overlays.items()]
        if self.as_user:  # the run's user has a name, for programs that look it up
            binds += [("--ro-bind", str(source), str(target))
                      for target, source in account_files(self.uid, cache_root().parent / "accounts").items()]
        # bwrap would give the folders leading to a mount the modes of the host's (/root is 0700):
        # made first, open, so that the unprivileged user can reach what is mounted below them.
        for folder in _leading_folders([Path(dest) for _, _, dest in binds], bound):
            args += ["--perms", "0755", "--dir", str(folder)]
        for option, source, dest in binds:
            args += [option, source, dest]
        return [*args, "--chdir", workdir, "--"]

    def run(self, command: str, timeout_s: float) -> ExecResult:
        try:
            argv = self.argv(command)
        except MountRefused as exc:  # nothing ran: the reason is the command's result
            message = f"[tether: not run: {exc}]"
            return ExecResult(126, message, hashlib.sha256(message.encode()).hexdigest(), 0.0, False, False)
        group = limits.ResourceGroup(self.policy)
        started = time.perf_counter()
        try:
            with tempfile.TemporaryFile() as sink:
                process = subprocess.Popen(
                    argv, cwd=self.workdir, env=self.env, stdin=subprocess.DEVNULL,
                    stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=limits.preexec(self.policy, group),
                )
                # A timer rather than wait(timeout=...): the latter polls and adds milliseconds.
                expired = threading.Event()
                timer = threading.Timer(timeout_s, lambda: (expired.set(), _kill_group(process)))
                timer.start()
                watch = _WriteWatch(self.workdir, self.policy.max_step_write_mb << 20, process)
                try:
                    exit_code = process.wait()
                except BaseException:  # interrupted (Ctrl-C): the command must not outlive us
                    _kill_group(process)
                    process.wait()
                    raise
                finally:
                    timer.cancel()
                    watch.stop()
                timed_out = expired.is_set()
                duration = time.perf_counter() - started
                output, digest, truncated = _read_output(sink)
        finally:
            group.close()
        if timed_out:
            output += f"\n[tether: command timed out after {timeout_s:g}s and was killed]"
        if watch.exceeded:
            output += (f"\n[tether: command killed: it wrote more than {self.policy.max_step_write_mb} MiB "
                       "([sandbox] max_step_write_mb)]")
        return ExecResult(exit_code, output, digest, duration, timed_out, truncated, watch.exceeded)


class _WriteWatch:
    """Kill a command once it has added more than `limit` bytes to its worktree's file system (files
    of any name, ignored ones included). Cheap: one statvfs every 50 ms; when the free space has
    dropped past the limit, the worktree's files written since the start are counted before the
    command is killed, so another process filling the same disk is not blamed on it."""

    def __init__(self, workdir: Path, limit: int, process: subprocess.Popen[bytes]):
        self.workdir, self.limit, self.process = workdir, limit, process
        self.started_ns = time.time_ns() - 50_000_000  # ctimes lag the clock by a tick
        self.start = _free_bytes(workdir)
        self.others = 0  # what other processes wrote meanwhile, found by counting
        self.written = 0
        self.exceeded = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _measure(self) -> None:
        dropped = self.start - _free_bytes(self.workdir)
        if dropped - self.others <= self.limit or self.exceeded:
            return
        self.written = _bytes_written_since(self.workdir, self.started_ns)
        if self.written > self.limit:
            self.exceeded = True
            _kill_group(self.process)
        else:
            self.others = dropped - self.written

    def _watch(self) -> None:
        while not self._done.wait(_WATCH_INTERVAL_S):
            self._measure()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
        self._measure()


def _bytes_written_since(root: Path, since_ns: int) -> int:
    """The space taken by files under `root` created or changed since `since_ns` (by ctime)."""
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                info = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if info.st_ctime_ns >= since_ns:
                total += info.st_blocks * 512
    return total


def _free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def _real(path: Path, inside: Path) -> str:
    """A folder a command wrote, as a bind source: with no symlink at any component below
    `inside` (a resolved folder of Tether's), and inside it."""
    text = os.path.normpath(os.path.abspath(path))
    real = os.path.realpath(text)
    if real != text:
        raise MountRefused(f"refusing to show {text} in the sandbox: it leads through a symlink (to {real})")
    if not Path(real).is_relative_to(inside):
        raise MountRefused(f"refusing to show {text} in the sandbox: it is outside {inside}")
    if not os.path.isdir(real):
        raise MountRefused(f"refusing to show {text} in the sandbox: it is not a folder")
    return real


def _real_file(path: Path, inside: Path) -> str:
    """A file a command could have replaced, as a bind source: a regular file, reached without
    symlinks, inside `inside`."""
    text = os.path.normpath(os.path.abspath(path))
    real = os.path.realpath(text)
    if real != text or not os.path.isfile(real):
        raise MountRefused(f"refusing to show {text} in the sandbox: it is not a regular file reached "
                           "without symlinks")
    if not Path(real).is_relative_to(inside):
        raise MountRefused(f"refusing to show {text} in the sandbox: it is outside {inside}")
    return real


def mount_point(workdir: Path, target: str) -> str:
    """Make the folder `target` inside `workdir` for a mount, as Tether's own: a symlink, a file or
    anything else the agent left at any part of that path is removed first (the agent's ignored
    files there are shadowed by the mount anyway)."""
    root = Path(os.path.realpath(workdir))
    current = root
    for part in Path(target).parts:
        if part in ("", ".", "..", "/"):
            raise MountRefused(f"refusing to mount at {target!r}: not a plain path inside the worktree")
        current = current / part
        if os.path.islink(current) or (os.path.lexists(current) and not os.path.isdir(current)):
            current.unlink()
        if not os.path.lexists(current):
            current.mkdir()
    return str(current)


def _leading_folders(destinations: list[Path], mounted: list[Path]) -> list[Path]:
    """The folders above the mount points that no mount provides, shallowest first."""
    folders = {parent for dest in destinations for parent in dest.parents}
    folders = {f for f in folders if f != Path("/") and f != Path("/tmp")
               and not any(f.is_relative_to(m) for m in mounted)}
    return sorted(folders, key=lambda f: len(f.parts))


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


# Terminal escape sequences (colours, cursor moves, titles): tokens and noise for a model, so the
# text of an output leaves them out; its digest is of the bytes as they came.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def plain(text: str) -> str:
    return _ESCAPES.sub("", text) if "\x1b" in text else text


def _read_output(sink: tempfile._TemporaryFileWrapper) -> tuple[str, str, bool]:  # type: ignore[type-arg]
    """Digest of the whole output; text of its head and tail (the middle of a flood is noise),
    without terminal escape sequences."""
    sink.seek(0)
    digest = hashlib.sha256()
    head = b""
    tail = b""
    size = 0
    while chunk := sink.read(1 << 16):
        digest.update(chunk)
        size += len(chunk)
        if len(head) < OUTPUT_HEAD:
            head += chunk[: OUTPUT_HEAD - len(head)]
        tail = (tail + chunk)[-OUTPUT_TAIL:]
    truncated = size > OUTPUT_HEAD + OUTPUT_TAIL
    if truncated:
        text = (head.decode("utf-8", "replace")
                + f"\n[... {size - OUTPUT_HEAD - OUTPUT_TAIL} bytes omitted ...]\n"
                + tail.decode("utf-8", "replace"))
    else:
        sink.seek(0)
        text = sink.read().decode("utf-8", "replace")
    return plain(text), digest.hexdigest(), truncated


def _tethers_own(entry: str) -> bool:
    """Whether a folder belongs to the virtualenv Tether runs in (never the project's tools)."""
    return sys.prefix != sys.base_prefix and Path(entry).resolve().is_relative_to(Path(sys.prefix).resolve())


def _caller_path() -> list[str]:
    """The caller's PATH without Tether's own virtualenv, after the base interpreter's folder."""
    entries = [str(Path(sys.base_prefix) / "bin")]
    entries += [entry for entry in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
                if entry and os.path.isabs(entry) and not _tethers_own(entry)]
    return list(dict.fromkeys(entries))


def _toolchain_dirs() -> list[Path]:
    """The base interpreter and the caller's PATH, so `python3`, `git` and friends exist; Tether's
    own virtualenv (its interpreter and site-packages) stays out."""
    return sorted({Path(sys.base_prefix), *map(Path, _caller_path())})


# What package managers need during setup: their configuration, proxies and certificates.
_SETUP_VARIABLES = re.compile(r"^(PIP_|UV_|NPM_CONFIG_|npm_config_|PNPM_|YARN_|POETRY_|COREPACK_)|"
                              r"^(HTTPS?_PROXY|https?_proxy|NO_PROXY|no_proxy|SSL_CERT_(FILE|DIR)|"
                              r"REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|NODE_EXTRA_CA_CERTS)$")


# Interpreter start-up hooks a check's folder could plant: an empty module of each name, first on
# PYTHONPATH, so that the one in the folder is never the one imported.
_STARTUP_HOOKS = ("sitecustomize.py", "usercustomize.py")


def _shadow_folder() -> Path:
    folder = cache_root().parent / "shadow"
    folder.mkdir(parents=True, exist_ok=True)
    for name in _STARTUP_HOOKS:
        hook = folder / name
        if not hook.is_file() or hook.stat().st_size:
            hook.write_text("")
    folder.chmod(0o755)
    return folder


def _judging_env(python_path: list[str]) -> dict[str, str]:
    """What a check whose verdict counts runs with: no start-up hook from the folder (sitecustomize,
    usercustomize; .pth files are only read from site-packages, which are the environment's), no
    user site, and bytecode only from a private cache in its own /tmp (never a planted __pycache__)."""
    return {"PYTHONPATH": os.pathsep.join([str(_shadow_folder()), *python_path]),
            "PYTHONNOUSERSITE": "1", "PYTHONPYCACHEPREFIX": "/tmp/.tether-pycache"}


def _sandbox_env(policy: SandboxPolicy, project: ProjectEnv | None, building: Path | None, workdir: Path,
                 judging: bool) -> tuple[dict[str, str], list[str]]:
    passed = list(policy.pass_env)
    if building is not None:
        passed += [name for name in os.environ if _SETUP_VARIABLES.match(name)]
    env, dropped = sandbox_environment(os.environ, passed)
    first = [str(entry) for entry in project.path] if project is not None else []
    env.update({
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PATH": os.pathsep.join([*first, *_caller_path()]),
        # The worktree's files belong to the caller; git must not call that dubious ownership.
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "safe.directory",
        "GIT_CONFIG_VALUE_0": "*",
    })
    python_path = [str(workdir / entry) if entry != "." else str(workdir)
                   for entry in (project.python_path if project is not None else [])]
    if python_path:
        env["PYTHONPATH"] = os.pathsep.join(python_path)
    if judging:
        env.update(_judging_env(python_path))
    if building is not None:
        env[ENV_VARIABLE] = str(building)
    return env, dropped


def for_setup(policy: SandboxPolicy) -> SandboxPolicy:
    """The limits for an environment's setup: it may download and unpack more than an agent's step
    (pip writes a whole wheel as one file: playwright's is over 100 MB, torch's over 2 GB)."""
    return policy.model_copy(update={"max_step_write_mb": max(policy.max_step_write_mb, 8192),
                                     "tmp_mb": max(policy.tmp_mb, 4096),
                                     "max_file_mb": max(policy.max_file_mb, 4096)})


def worktree_sandbox(policy: SandboxPolicy, network: bool, worktree: Path, repo: Path,
                     project: ProjectEnv | None = None, building: Path | None = None) -> Sandbox:
    """The sandbox of one worktree: it writes there; the repository's git store is read-only, its
    config without remotes or credentials. The agent's `.git` is a git dir of its own over the
    repository's objects (see agent_git.py); the worktree's real `.git` pointer is Tether's.
    `project` is the prepared environment; `building`, one being set up (it alone is writable, and
    it reads the repository as it is)."""
    store = common_dir(repo)
    overlays = {config: _scrubbed_git_config(config, tether_dir(repo)) for config in _git_configs(store)}
    if building is not None:
        return Sandbox(policy, worktree, network=network, read_only=[store], frozen=[worktree / ".git"],
                       overlays=overlays, building=building)
    pointer, own_git = agent_git(repo, worktree, registered_git_dir(repo, worktree))
    return Sandbox(policy, worktree, network=network, read_only=[store], writable=[own_git],
                   overlays={**overlays, worktree / ".git": pointer}, project=project)


# What git needs to read the repository; everything else (remotes, credentials, URLs with tokens,
# extra headers, includes) stays out of the sandbox.
_KEPT_GIT_CONFIG = re.compile(r"^(core\.(repositoryformatversion|bare|filemode|symlinks|ignorecase|"
                              r"precomposeunicode|autocrlf|eol|quotepath|logallrefupdates)|extensions\..*)$")


def _git_configs(store: Path) -> list[Path]:
    """The repository's config, and its submodules' (each may name a remote with a token)."""
    modules = store / "modules"
    nested = sorted(modules.rglob("config")) if modules.is_dir() else []
    return [path for path in [store / "config", *nested] if path.is_file()]


def _scrubbed_git_config(config: Path, state: Path) -> Path:
    """A copy of a git config holding only the keys git needs to read the repository."""
    listing = subprocess.run(["git", "config", "--file", str(config), "--null", "--list"],
                             capture_output=True, text=True, env=git_env()).stdout
    digest = hashlib.sha256(str(config).encode()).hexdigest()[:16]
    scrubbed = state / f"sandbox-gitconfig-{digest}"
    lines = []
    for entry in filter(None, listing.split("\0")):
        key, _, value = entry.partition("\n")
        if _KEPT_GIT_CONFIG.match(key):
            section, _, name = key.rpartition(".")
            lines.append(f"[{section}]\n\t{name} = {value}")
    scrubbed.write_text("\n".join(lines) + "\n")
    return scrubbed
