"""The forges' REST APIs, the few endpoints delivery needs, in the shapes each documents: GitHub
(pulls, issue labels, requested reviewers), GitLab (merge requests, users) and Gitea (pulls, issue
labels, requested reviewers), and afterwards what became of a request (merged, closed, reviews
asking for changes). Each forge allows one open request per head branch and says so
when asked for a second (GitHub 422, GitLab and Gitea 409): opening is find, else create, else
(another worker won the race) find again and update, so a run never gets two."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol
from urllib.parse import quote

import httpx

from tether.delivery.remotes import DeliveryError

TIMEOUT_S = 30.0
DEFAULT_API = {"github": "https://api.github.com", "gitlab": "https://{host}/api/v4", "gitea": "https://{host}/api/v1"}
DEFAULT_TOKEN_ENV = {"github": "GITHUB_TOKEN", "gitlab": "GITLAB_TOKEN", "gitea": "GITEA_TOKEN"}


@dataclass(frozen=True)
class Request:
    """What to open: the run's branch into `base`."""

    head: str
    base: str
    title: str
    body: str
    draft: bool
    labels: list[str] = field(default_factory=list)
    reviewers: list[str] = field(default_factory=list)  # CODEOWNERS names: "@alice", "@org/team"


@dataclass(frozen=True)
class Opened:
    number: int
    url: str
    created: bool
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Review:
    """Where a request stands on the forge: open, merged or closed unmerged; when it was merged;
    who asks for changes now (each reviewer's latest verdict: a later approval or a dismissal
    clears theirs)."""
    state: Literal["open", "merged", "closed"]
    merged_at: float | None = None
    changes_requested: list[str] = field(default_factory=list)


class Api:
    """JSON over HTTP with the forge's errors turned into DeliveryError kinds."""

    def __init__(self, base_url: str, headers: dict[str, str], token: str):
        self.client = httpx.Client(base_url=base_url.rstrip("/") + "/", headers=headers, timeout=TIMEOUT_S)
        self.token = token

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, path.lstrip("/"), **kwargs)
        except httpx.HTTPError as exc:
            raise DeliveryError("network", f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            raise self._error(method, path, response)
        return response.json() if response.content else None

    def _error(self, method: str, path: str, response: httpx.Response) -> DeliveryError:
        status, headers = response.status_code, response.headers
        try:
            body = response.json()
        except ValueError:
            body = response.text[:500]
        message = str(body.get("message", body) if isinstance(body, dict) else body).replace(self.token, "[masked]")
        where = f"{method} {path}: {status}"
        remaining = headers.get("x-ratelimit-remaining") or headers.get("ratelimit-remaining")
        if status == 429 or (status == 403 and remaining == "0"):
            return DeliveryError("rate_limit", f"{where} rate limited: {message}", _retry_at(headers))
        kinds = {401: "auth", 403: "auth", 404: "not_found", 409: "conflict", 422: "invalid"}
        return DeliveryError(kinds.get(status, "server" if status >= 500 else "invalid"), f"{where} {message}")

    def close(self) -> None:
        self.client.close()


def _retry_at(headers: httpx.Headers) -> float | None:
    if "retry-after" in headers:
        try:
            return time.time() + float(headers["retry-after"])
        except ValueError:
            return None
    reset = headers.get("x-ratelimit-reset") or headers.get("ratelimit-reset")
    try:
        return float(reset) if reset is not None else None
    except ValueError:
        return None


def _names(reviewers: list[str]) -> tuple[list[str], list[str]]:
    """(people, teams) of CODEOWNERS names: "@alice" is a person, "@org/team" a team; e-mails are left out."""
    people = [r.removeprefix("@") for r in reviewers if r.startswith("@") and "/" not in r]
    teams = [r.split("/", 1)[1] for r in reviewers if r.startswith("@") and "/" in r]
    return people, teams


def _optional(warnings: list[str], what: str, action: Any) -> None:
    """Labels and reviewers are asked for, not required: a refusal is a warning on the delivery."""
    try:
        action()
    except DeliveryError as exc:
        if exc.kind in ("network", "rate_limit", "auth"):
            raise
        warnings.append(f"{what}: {exc}")


class Endpoints(Protocol):
    """A forge's own calls: find the open request of a branch, create one, update one, and ask for
    labels and reviewers on it. `number` and `url` name the fields of its request objects."""

    number: str
    url: str

    def find(self, head: str) -> dict[str, Any] | None: ...

    def create(self, request: Request) -> dict[str, Any]: ...

    def update(self, number: int, request: Request) -> None: ...

    def decorate(self, number: int, request: Request, warnings: list[str]) -> None: ...

    def review(self, number: int) -> Review: ...


def open_request(forge: Endpoints, request: Request) -> Opened:
    """Find, else create, else (another worker won the race: the forge refused a second request for
    the branch) find again; update what was found. Then labels and reviewers."""
    warnings: list[str] = []
    existing, created = forge.find(request.head), False
    if existing is None:
        try:
            existing, created = forge.create(request), True
        except DeliveryError as exc:
            existing = forge.find(request.head) if exc.kind in ("invalid", "conflict") else None
            if existing is None:  # refused for another reason (no such base, nothing to compare)
                raise
    number = int(existing[forge.number])
    if not created:
        forge.update(number, request)
    forge.decorate(number, request, warnings)
    return Opened(number, existing[forge.url], created, warnings)


class GitHub:
    number, url = "number", "html_url"

    def __init__(self, api: Api, repository: str):
        self.api, self.repo, self.owner = api, f"repos/{repository}", repository.split("/")[0]

    @staticmethod
    def headers(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28"}

    def find(self, head: str) -> dict[str, Any] | None:
        found = self.api.call("GET", f"{self.repo}/pulls", params={"head": f"{self.owner}:{head}", "state": "open"})
        return found[0] if found else None

    def create(self, request: Request) -> dict[str, Any]:
        return self.api.call("POST", f"{self.repo}/pulls", json={
            "title": request.title, "head": request.head, "base": request.base, "body": request.body,
            "draft": request.draft})

    def update(self, number: int, request: Request) -> None:
        self.api.call("PATCH", f"{self.repo}/pulls/{number}", json={"title": request.title, "body": request.body})

    def decorate(self, number: int, request: Request, warnings: list[str]) -> None:
        if request.labels:
            _optional(warnings, "labels", lambda: self.api.call(
                "POST", f"{self.repo}/issues/{number}/labels", json={"labels": request.labels}))
        people, teams = _names(request.reviewers)
        if people or teams:
            _optional(warnings, "reviewers", lambda: self.api.call(
                "POST", f"{self.repo}/pulls/{number}/requested_reviewers",
                json={"reviewers": people, "team_reviewers": teams}))

    def review(self, number: int) -> Review:
        pull = self.api.call("GET", f"{self.repo}/pulls/{number}")
        verdicts = {"APPROVED": False, "DISMISSED": False, "CHANGES_REQUESTED": True}
        return Review(_state(pull), _timestamp(pull.get("merged_at")), _asking_for_changes(
            self._reviews(number), verdicts))

    def _reviews(self, number: int) -> list[dict[str, Any]]:
        return _pages(lambda page: self.api.call("GET", f"{self.repo}/pulls/{number}/reviews",
                                                 params={"per_page": 100, "page": page}), 100)


class Gitea(GitHub):
    """Gitea's pulls API follows GitHub's, except: a draft is a "WIP:" title, the token scheme, and
    no filter by head branch (the open pulls are paged through)."""

    @staticmethod
    def headers(token: str) -> dict[str, str]:
        return {"Authorization": f"token {token}"}

    def find(self, head: str) -> dict[str, Any] | None:
        page = 1
        while True:
            found = self.api.call("GET", f"{self.repo}/pulls", params={"state": "open", "page": page, "limit": 50})
            match = next((pull for pull in found or [] if pull.get("head", {}).get("ref") == head), None)
            if match is not None or not found or len(found) < 50:
                return match
            page += 1

    def create(self, request: Request) -> dict[str, Any]:
        return self.api.call("POST", f"{self.repo}/pulls", json={
            "title": _titled(request, "WIP: "), "head": request.head, "base": request.base, "body": request.body})

    def update(self, number: int, request: Request) -> None:
        self.api.call("PATCH", f"{self.repo}/pulls/{number}",
                      json={"title": _titled(request, "WIP: "), "body": request.body})

    def review(self, number: int) -> Review:
        pull = self.api.call("GET", f"{self.repo}/pulls/{number}")
        reviews = [r for r in self._reviews(number) if not r.get("dismissed")]
        verdicts = {"APPROVED": False, "REQUEST_CHANGES": True}
        return Review(_state(pull), _timestamp(pull.get("merged_at")), _asking_for_changes(reviews, verdicts))

    def _reviews(self, number: int) -> list[dict[str, Any]]:
        return _pages(lambda page: self.api.call("GET", f"{self.repo}/pulls/{number}/reviews",
                                                 params={"limit": 50, "page": page}), 50)


class GitLab:
    number, url = "iid", "web_url"

    def __init__(self, api: Api, repository: str):
        self.api, self.project = api, f"projects/{quote(repository, safe='')}"

    @staticmethod
    def headers(token: str) -> dict[str, str]:
        return {"PRIVATE-TOKEN": token}

    def find(self, head: str) -> dict[str, Any] | None:
        found = self.api.call("GET", f"{self.project}/merge_requests",
                              params={"source_branch": head, "state": "opened"})
        return found[0] if found else None

    def _fields(self, request: Request) -> dict[str, Any]:
        return {"title": _titled(request, "Draft: "), "description": request.body, "labels": ",".join(request.labels)}

    def create(self, request: Request) -> dict[str, Any]:
        return self.api.call("POST", f"{self.project}/merge_requests", json={
            **self._fields(request), "source_branch": request.head, "target_branch": request.base})

    def update(self, number: int, request: Request) -> None:
        self.api.call("PUT", f"{self.project}/merge_requests/{number}", json=self._fields(request))

    def decorate(self, number: int, request: Request, warnings: list[str]) -> None:
        """Labels went with the request; reviewers are user ids, looked up by name."""
        ids = []
        for name in _names(request.reviewers)[0]:
            users = self.api.call("GET", "users", params={"username": name})
            if users:
                ids.append(int(users[0]["id"]))
            else:
                warnings.append(f"reviewers: no GitLab user {name!r}")
        if ids:
            _optional(warnings, "reviewers", lambda: self.api.call(
                "PUT", f"{self.project}/merge_requests/{number}", json={"reviewer_ids": ids}))


    def review(self, number: int) -> Review:
        request = self.api.call("GET", f"{self.project}/merge_requests/{number}")
        reviewers = self.api.call("GET", f"{self.project}/merge_requests/{number}/reviewers") or []
        asking = sorted(r["user"]["username"] for r in reviewers if r.get("state") == "requested_changes")
        if not asking and request.get("detailed_merge_status") == "requested_changes":
            asking = ["(a reviewer)"]
        state = {"opened": "open", "locked": "open", "merged": "merged"}.get(request["state"], "closed")
        return Review(state, _timestamp(request.get("merged_at")), asking)


def _state(pull: dict[str, Any]) -> Literal["open", "merged", "closed"]:
    """GitHub and Gitea: a merged pull is "closed" with `merged` true (GitHub's single pull) or a
    `merged_at`."""
    if pull.get("merged") or pull.get("merged_at"):
        return "merged"
    return "open" if pull.get("state") == "open" else "closed"


def _timestamp(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def _pages(fetch: Any, size: int) -> list[dict[str, Any]]:
    found, page = [], 1
    while True:
        batch = fetch(page) or []
        found += batch
        if len(batch) < size:
            return found
        page += 1


def _asking_for_changes(reviews: list[dict[str, Any]], verdicts: dict[str, bool]) -> list[str]:
    """Who asks for changes: each reviewer's latest review that gives a verdict (comments do not)."""
    latest: dict[str, bool] = {}
    for review in sorted(reviews, key=lambda r: r.get("submitted_at") or ""):
        if review.get("state") in verdicts:
            latest[(review.get("user") or {}).get("login", "?")] = verdicts[review["state"]]
    return sorted(name for name, asking in latest.items() if asking)


def _titled(request: Request, draft_prefix: str) -> str:
    return f"{draft_prefix}{request.title}" if request.draft else request.title


FORGES: dict[str, type[GitHub] | type[GitLab]] = {"github": GitHub, "gitlab": GitLab, "gitea": Gitea}


def open_on(forge: str, api_url: str, repository: str, token: str, request: Request) -> Opened:
    return _with(forge, api_url, repository, token, lambda endpoints: open_request(endpoints, request))


def review_on(forge: str, api_url: str, repository: str, token: str, number: int) -> Review:
    return _with(forge, api_url, repository, token, lambda endpoints: endpoints.review(number))


def _with(forge: str, api_url: str, repository: str, token: str, action: Any) -> Any:
    kind = FORGES[forge]
    api = Api(api_url, kind.headers(token), token)
    try:
        return action(kind(api, repository))
    finally:
        api.close()
