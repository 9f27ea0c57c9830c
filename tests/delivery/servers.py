"""Real servers on loopback for delivery: git's smart-HTTP protocol (`git http-backend`, the CGI
program git ships, behind a small HTTP server that asks for a token as Basic auth, as the forges
do), and a forge REST server implementing the endpoints delivery uses in the shapes GitHub, GitLab
and Gitea document, errors included. The forge checks its head branches in the same bare
repositories the git server serves, so a request for a branch that was never pushed fails as it
would on the forge."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

TOKEN = "ghp_" + "t3st" * 9  # looks like a real token, so a leak would also be masked-detectable


def _body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().strip(), 16)
            if size == 0:
                handler.rfile.readline()
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    return handler.rfile.read(int(handler.headers.get("content-length", 0)))


@contextmanager
def git_http_server(root: Path, token: str = TOKEN) -> Iterator[str]:
    """Serves the bare repositories under `root` at http://127.0.0.1:PORT/<name>.git."""

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            expected = "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
            if self.headers.get("authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("content-length", "0")
                self.end_headers()
                return
            parts = urlsplit(self.path)
            env = {"PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(root), "GIT_HTTP_EXPORT_ALL": "1",
                   "REQUEST_METHOD": self.command, "PATH_INFO": unquote(parts.path), "QUERY_STRING": parts.query,
                   "REMOTE_USER": "x-access-token", "REMOTE_ADDR": "127.0.0.1",
                   "CONTENT_TYPE": self.headers.get("content-type", "")}
            for header, name in (("content-encoding", "HTTP_CONTENT_ENCODING"), ("git-protocol", "GIT_PROTOCOL")):
                if header in self.headers:
                    env[name] = self.headers[header]
            body = _body(self) if self.command == "POST" else b""
            env["CONTENT_LENGTH"] = str(len(body))
            result = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True)
            head, _, payload = result.stdout.partition(b"\r\n\r\n")
            status, headers = 200, []
            for line in head.decode().split("\r\n"):
                name, _, value = line.partition(": ")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _serve

        def log_message(self, *args: Any) -> None:
            pass

    with _serving(Handler) as url:
        yield url


@contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def bare_repo(root: Path, name: str, source: Path) -> Path:
    """A bare repository `name.git` under `root` holding `source`'s branches (the forge's copy)."""
    path = root / f"{name}.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(source), str(path)], check=True)
    return path


@dataclass
class Pull:
    number: int
    head: str
    base: str
    title: str
    body: str
    draft: bool
    state: str = "open"  # open, closed, merged
    labels: list[str] = field(default_factory=list)
    reviewers: list[str] = field(default_factory=list)
    merged_at: str | None = None  # ISO 8601, as the forges write it
    reviews: list[tuple[str, str]] = field(default_factory=list)  # (reviewer, verdict), oldest first:
    # verdicts in GitHub's words: APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED

    def merge(self, at: str = "2026-12-01T10:00:00Z") -> None:
        self.state, self.merged_at = "merged", at


@dataclass
class Forge:
    """The forge's state: its repositories' requests, what it was asked, and failures to inject."""

    kind: str  # github, gitlab, gitea
    root: Path  # the bare repositories, shared with the git server
    token: str = TOKEN
    pulls: dict[str, list[Pull]] = field(default_factory=dict)  # "owner/name" -> its requests
    users: dict[str, int] = field(default_factory=lambda: {"alice": 7, "bob": 8})  # GitLab ids
    requests: list[tuple[str, str]] = field(default_factory=list)
    fail_next: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    slow_s: float = 0.0  # hold every request this long (to make two deliverers race)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def open_pulls(self, repository: str) -> list[Pull]:
        return [pull for pull in self.pulls.get(repository, []) if pull.state == "open"]


def forge_api(forge: Forge) -> str:
    """The API path prefix of the kind, as the policy's api_url continues after the server's address."""
    return {"github": "/api/v3", "gitlab": "/api/v4", "gitea": "/api/v1"}[forge.kind]


@contextmanager
def forge_server(forge: Forge) -> Iterator[str]:
    """Serves the forge's REST API; yields the API base URL."""

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            body = json.loads(_body(self) or b"null")
            forge.requests.append((self.command, parts.path))
            time.sleep(forge.slow_s)
            if forge.fail_next:
                self._reply(*forge.fail_next.pop(0))
                return
            if not _authorized(forge, self.headers):
                self._reply(401, {"message": "Bad credentials" if forge.kind == "github" else "401 Unauthorized"})
                return
            path = parts.path.removeprefix(forge_api(forge))  # GitLab's project id stays encoded until routed
            query = {key: values[0] for key, values in parse_qs(parts.query).items()}
            with forge.lock:
                status, reply = ROUTES[forge.kind](forge, self.command, path, query, body)
            self._reply(status, reply)

        do_GET = do_POST = do_PATCH = do_PUT = _serve

        def log_message(self, *args: Any) -> None:
            pass

    with _serving(Handler) as url:
        yield url + forge_api(forge)


def _authorized(forge: Forge, headers: Any) -> bool:
    wanted = {"github": ("authorization", f"Bearer {forge.token}"), "gitlab": ("private-token", forge.token),
              "gitea": ("authorization", f"token {forge.token}")}[forge.kind]
    return headers.get(wanted[0]) == wanted[1]


def _branch_exists(forge: Forge, repository: str, branch: str) -> bool:
    name = repository.split("/")[-1]
    return subprocess.run(["git", "--git-dir", str(forge.root / f"{name}.git"), "rev-parse", "--verify", "--quiet",
                           f"refs/heads/{branch}"], capture_output=True).returncode == 0


def _known(forge: Forge, repository: str) -> bool:
    return (forge.root / f"{repository.split('/')[-1]}.git").is_dir()


def _github_shape(repository: str, pull: Pull, host: str = "https://github.com") -> dict[str, Any]:
    # a merged pull is "closed" with merged_at set (and `merged` true on the single pull)
    return {"number": pull.number, "html_url": f"{host}/{repository}/pull/{pull.number}",
            "state": "open" if pull.state == "open" else "closed", "merged_at": pull.merged_at,
            "title": pull.title, "body": pull.body, "draft": pull.draft, "head": {"ref": pull.head},
            "base": {"ref": pull.base}, "labels": [{"name": label} for label in pull.labels],
            "requested_reviewers": [{"login": name} for name in pull.reviewers]}


def _stamp(minute: int) -> str:
    return f"2026-12-01T{minute // 60:02d}:{minute % 60:02d}:00Z"


def _page(items: list[Any], query: dict[str, str], size_key: str, default: int) -> list[Any]:
    page, size = int(query.get("page", 1)), int(query.get(size_key, default))
    return items[(page - 1) * size: page * size]


def _github(forge: Forge, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
    match = re.fullmatch(r"/repos/([^/]+/[^/]+)/(pulls|issues)(?:/(\d+))?(?:/(labels|requested_reviewers|reviews))?",
                         path)
    if match is None or not _known(forge, match[1]):
        return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
    repository, kind, number, sub = match[1], match[2], match[3], match[4]
    pulls = forge.pulls.setdefault(repository, [])
    if kind == "pulls" and number is None and method == "GET":
        owner, _, head = query.get("head", ":").partition(":")
        found = [p for p in forge.open_pulls(repository)
                 if not head or (p.head == head and owner == repository.split("/")[0])]
        return 200, [_github_shape(repository, p) for p in found]
    if kind == "pulls" and number is None and method == "POST":
        if any(p.head == body["head"] for p in forge.open_pulls(repository)):
            return 422, {"message": "Validation Failed", "errors": [
                {"resource": "PullRequest", "code": "custom",
                 "message": f"A pull request already exists for {repository.split('/')[0]}:{body['head']}."}]}
        if not _branch_exists(forge, repository, body["head"]):
            return 422, {"message": "Validation Failed",
                         "errors": [{"resource": "PullRequest", "field": "head", "code": "invalid"}]}
        pull = Pull(len(pulls) + 1, body["head"], body["base"], body["title"], body.get("body", ""),
                    bool(body.get("draft")))
        pulls.append(pull)
        return 201, _github_shape(repository, pull)
    pull = next((p for p in pulls if str(p.number) == number), None)
    if pull is None:
        return 404, {"message": "Not Found"}
    if kind == "pulls" and sub is None and method == "GET":
        return 200, {**_github_shape(repository, pull), "merged": pull.state == "merged"}
    if kind == "pulls" and sub == "reviews" and method == "GET":
        reviews = [{"id": i + 1, "user": {"login": who}, "state": verdict, "body": "",
                    "submitted_at": _stamp(i)} for i, (who, verdict) in enumerate(pull.reviews)]
        return 200, _page(reviews, query, "per_page", 30)
    if kind == "pulls" and sub is None and method == "PATCH":
        pull.title, pull.body = body.get("title", pull.title), body.get("body", pull.body)
        return 200, _github_shape(repository, pull)
    if kind == "issues" and sub == "labels" and method == "POST":
        pull.labels = sorted({*pull.labels, *body["labels"]})
        return 200, [{"name": label} for label in pull.labels]
    if kind == "pulls" and sub == "requested_reviewers" and method == "POST":
        unknown = [name for name in body.get("reviewers", []) if name not in forge.users]
        if unknown:  # GitHub: reviewers must be collaborators
            return 422, {"message": "Reviews may only be requested from collaborators. One or more of the users or "
                                    "teams you specified is not a collaborator of the repository."}
        pull.reviewers = sorted({*pull.reviewers, *body.get("reviewers", [])})
        return 201, _github_shape(repository, pull)
    return 404, {"message": "Not Found"}


def _gitea(forge: Forge, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
    match = re.fullmatch(r"/repos/([^/]+/[^/]+)/(pulls|issues)(?:/(\d+))?(?:/(labels|requested_reviewers|reviews))?",
                         path)
    if match is None or not _known(forge, match[1]):
        return 404, {"message": "The target couldn't be found.", "errors": []}
    repository, kind, number = match[1], match[2], match[3]
    pull = next((p for p in forge.pulls.get(repository, []) if str(p.number) == number), None)
    if pull is not None and match[4] == "reviews" and method == "GET":  # Gitea's words; a dismissal is a flag
        words = {"APPROVED": "APPROVED", "CHANGES_REQUESTED": "REQUEST_CHANGES", "COMMENTED": "COMMENT"}
        reviews = [{"id": i + 1, "user": {"login": who}, "state": words.get(verdict, "APPROVED"),
                    "dismissed": verdict == "DISMISSED", "submitted_at": _stamp(i).replace("Z", "+00:00")}
                   for i, (who, verdict) in enumerate(pull.reviews)]
        return 200, _page(reviews, query, "limit", 30)
    if kind == "pulls" and number is None and method == "GET":
        open_pulls = forge.open_pulls(repository)
        page, limit = int(query.get("page", 1)), int(query.get("limit", 30))
        chosen = open_pulls[(page - 1) * limit: page * limit]
        return 200, [_github_shape(repository, p, "https://gitea.example") for p in chosen]
    if kind == "pulls" and number is None and method == "POST":
        existing = next((p for p in forge.open_pulls(repository) if p.head == body["head"]), None)
        if existing is not None:
            return 409, {"message": f"pull request already exists for these targets [id: {existing.number}, "
                                    f"issue_id: {existing.number}, head_branch: {body['head']}, "
                                    f"base_branch: {body['base']}]", "url": "https://gitea.example/api/swagger"}
        if not _branch_exists(forge, repository, body["head"]):
            return 404, {"message": "The target couldn't be found.", "errors": []}
        pulls = forge.pulls.setdefault(repository, [])
        pull = Pull(len(pulls) + 1, body["head"], body["base"], body["title"], body.get("body", ""),
                    body["title"].startswith("WIP:"))
        pulls.append(pull)
        return 201, _github_shape(repository, pull, "https://gitea.example")
    status, reply = _github(forge, method, path, query, body)  # the rest of Gitea's API is GitHub's shape
    if isinstance(reply, dict) and "html_url" in reply:
        reply["html_url"] = reply["html_url"].replace("https://github.com", "https://gitea.example")
    return status, reply


def _gitlab_shape(repository: str, pull: Pull, forge: Forge) -> dict[str, Any]:
    return {"iid": pull.number, "id": 1000 + pull.number, "web_url": f"https://gitlab.example/{repository}/-/merge_"
            f"requests/{pull.number}", "state": "opened" if pull.state == "open" else pull.state,
            "title": pull.title, "description": pull.body, "draft": pull.title.startswith("Draft:"),
            "source_branch": pull.head, "target_branch": pull.base, "labels": pull.labels,
            "reviewers": [{"id": forge.users[name], "username": name} for name in pull.reviewers]}


def _gitlab(forge: Forge, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
    if path == "/users" and method == "GET":
        name = query.get("username")
        return 200, [{"id": forge.users[name], "username": name}] if name in forge.users else []
    match = re.fullmatch(r"/projects/([^/]+)/merge_requests(?:/(\d+))?(/reviewers)?", path)
    repository = unquote(match[1]) if match else ""
    if match is None or not _known(forge, repository):
        return 404, {"message": "404 Project Not Found"}
    pulls = forge.pulls.setdefault(repository, [])
    if match[2] is None and method == "GET":
        found = [p for p in forge.open_pulls(repository) if p.head == query.get("source_branch", p.head)]
        return 200, [_gitlab_shape(repository, p, forge) for p in found]
    if match[2] is None and method == "POST":
        existing = next((p for p in forge.open_pulls(repository) if p.head == body["source_branch"]), None)
        if existing is not None:
            return 409, {"message": [f"Another open merge request already exists for this source branch: "
                                     f"!{existing.number}"]}
        if not _branch_exists(forge, repository, body["source_branch"]):
            return 422, {"message": ["Source branch does not exist"]}
        pull = Pull(len(pulls) + 1, body["source_branch"], body["target_branch"], body["title"],
                    body.get("description", ""), body["title"].startswith("Draft:"),
                    labels=sorted(filter(None, body.get("labels", "").split(","))))
        pulls.append(pull)
        return 201, _gitlab_shape(repository, pull, forge)
    pull = next((p for p in pulls if str(p.number) == match[2]), None)
    if pull is not None and method == "GET" and match[3]:  # each reviewer once, with their latest state
        latest = {who: verdict for who, verdict in pull.reviews if verdict != "COMMENTED"}
        states = {"APPROVED": "approved", "CHANGES_REQUESTED": "requested_changes", "DISMISSED": "unreviewed"}
        return 200, [{"user": {"id": forge.users.get(who, 0), "username": who}, "state": states[verdict],
                      "created_at": "2026-12-01T00:00:00.000Z"} for who, verdict in latest.items()]
    if pull is not None and method == "GET":
        asking = any(v == "CHANGES_REQUESTED" for v in {w: v for w, v in pull.reviews if v != "COMMENTED"}.values())
        status = "requested_changes" if asking and pull.state == "open" else \
            "mergeable" if pull.state == "open" else "not_open"
        return 200, {**_gitlab_shape(repository, pull, forge), "merged_at": pull.merged_at,
                     "detailed_merge_status": status}
    if pull is None or method != "PUT":
        return 404, {"message": "404 Not found"}
    pull.title = body.get("title", pull.title)
    pull.body = body.get("description", pull.body)
    if "labels" in body:
        pull.labels = sorted(filter(None, body["labels"].split(",")))
    if "reviewer_ids" in body:
        names = {v: k for k, v in forge.users.items()}
        pull.reviewers = sorted(names[i] for i in body["reviewer_ids"] if i in names)
    return 200, _gitlab_shape(repository, pull, forge)


ROUTES = {"github": _github, "gitlab": _gitlab, "gitea": _gitea}
