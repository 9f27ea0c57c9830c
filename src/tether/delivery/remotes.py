"""Remotes: what a remote's URL says (host, repository, forge), and pushing a run's branch to it
over git's own transport, never with force and never to anything but the run's own branch."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tether.errors import TetherError
from tether.workspace.git import GitError, git

RUN_BRANCH_PREFIX = "tether/"
_SCP_LIKE = re.compile(r"^(?:[\w.-]+@)?(?P<host>[\w.-]+):(?P<path>(?!/)[^\s]+)$")  # git@host:owner/name.git
FORGE_HOSTS = {"github.com": "github", "gitlab.com": "gitlab", "codeberg.org": "gitea", "gitea.com": "gitea"}


class DeliveryError(TetherError):
    """Delivery could not finish: `kind` says why (auth, conflict, rate_limit, network, ...)."""

    def __init__(self, kind: str, message: str, retry_at: float | None = None):
        super().__init__(message)
        self.kind, self.retry_at = kind, retry_at
        self.exit_code = 2 if kind == "config" else 1  # bad input, or a delivery that may work later


@dataclass(frozen=True)
class Remote:
    url: str  # as configured, credentials removed
    host: str
    path: str  # "owner/name" (GitLab: "group/sub/name"), without ".git"
    http: bool

    @property
    def forge(self) -> str | None:
        if self.host in FORGE_HOSTS:
            return FORGE_HOSTS[self.host]
        return next((forge for forge in ("gitlab", "gitea") if forge in self.host.split(".")[0]), None)


def parse_remote(url: str) -> Remote:
    """A remote URL (https, ssh, scp-like, git, file) read; credentials in it are dropped."""
    scp = _SCP_LIKE.match(url) if "://" not in url else None
    if scp is not None:
        return Remote(url, scp["host"], _repository(scp["path"]), http=False)
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http", "ssh", "git", "file"):
        raise DeliveryError("config", f"remote {url!r} is not a URL git can push to")
    host = parts.hostname or ""
    clean = urlunsplit((parts.scheme, host + (f":{parts.port}" if parts.port else ""), parts.path, "", ""))
    return Remote(clean, host, _repository(parts.path), http=parts.scheme in ("https", "http"))


def _repository(path: str) -> str:
    return path.strip("/").removesuffix(".git")


def resolve_remote(repo: Path, remote: str) -> Remote:
    """The remote a policy names (a remote of the repository, or a URL), parsed."""
    if "://" in remote or _SCP_LIKE.match(remote) or remote.startswith("/"):
        return parse_remote(remote if not remote.startswith("/") else f"file://{remote}")
    try:
        url = git(repo, "remote", "get-url", "--push", remote).strip()
    except GitError as exc:
        raise DeliveryError("config", f"the repository has no remote {remote!r} ([delivery] remote)") from exc
    return parse_remote(url if not url.startswith("/") else f"file://{url}")


def push_branch(repo: Path, remote: Remote, branch: str, commit: str, base: str | None, token: str | None) -> str:
    """Push `commit` to the remote as `branch` (the run's own, `tether/<run id>`), without force:
    a remote branch that has moved elsewhere is a conflict, not overwritten. The token goes to git as
    an HTTP header through the environment, never in a URL or an argument. Returns the ref pushed."""
    if not branch.startswith(RUN_BRANCH_PREFIX) or branch == base:
        raise DeliveryError("config", f"refusing to push {branch!r}: Tether pushes only its runs' own branches")
    ref = f"refs/heads/{branch}"
    config = None
    if token is not None and remote.http:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        config = {"http.extraHeader": f"Authorization: Basic {basic}"}
    try:
        git(repo, "push", "--no-verify", remote.url, f"{commit}:{ref}", config=config)
    except GitError as exc:
        raise _classified(str(exc), token) from None
    return ref


def _classified(message: str, token: str | None) -> DeliveryError:
    text = message.replace(token, "[masked]") if token else message
    lower = text.lower()
    if "non-fast-forward" in lower or "[rejected]" in lower or "fetch first" in lower:
        return DeliveryError("conflict", f"the remote's branch has other commits: {text}")
    if any(word in lower for word in ("authentication", "401", "403", "permission denied", "could not read username")):
        return DeliveryError("auth", f"the remote refused the credentials: {text}")
    if any(word in lower for word in ("could not resolve", "connection refused", "timed out", "unable to access")):
        return DeliveryError("network", f"the remote could not be reached: {text}")
    if "not found" in lower or "does not appear to be a git repository" in lower:
        return DeliveryError("not_found", f"no such repository: {text}")
    return DeliveryError("server", text)
