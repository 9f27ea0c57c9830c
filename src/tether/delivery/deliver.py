"""Deliver a finished run as its policy says: push its branch, and open (or update) its one pull
request. Every outcome is an event on the run: `delivered`, or `delivery_failed` with the stage and
kind (auth, conflict, rate_limit, network, ...); the run's branch stays, and delivering again picks
up where the last attempt stopped (the push is a no-op once done, the request is found and updated)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from tether.delivery import evidence
from tether.delivery.forges import DEFAULT_API, DEFAULT_TOKEN_ENV, Request, Review, open_on, review_on
from tether.delivery.remotes import DeliveryError, Remote, parse_remote, push_branch, resolve_remote
from tether.guard.guard import ownership_at
from tether.ledger import Ledger
from tether.ledger import events as ev
from tether.ledger.chain import StoredEvent
from tether.ledger.queries import finished_of, requester_of, run_policy, summarize
from tether.ledger.store import ConcurrentAppend, RunRow
from tether.policy import Policy
from tether.policy.schema import DELIVERY_ORDER, DeliveryPolicy
from tether.workspace.git import GitError, git

RECORD_TRIES = 5


PASSING = ("rate_limit", "network", "server")  # failures worth trying again without a person
REDELIVERIES = 3
BACKOFF_S = 30.0


def redelivery_due(events: list[StoredEvent]) -> float | None:
    """When a worker should deliver the run again: its last delivery failed for a passing reason
    (a rate limit, the network, the forge's server), fewer than REDELIVERIES times in a row; at the
    forge's retry_at, else after a doubling backoff. None when there is nothing to retry."""
    failures = [e for e in events if isinstance(e.data, ev.DeliveryFailed | ev.Delivered)]
    streak = 0
    for event in reversed(failures):
        if isinstance(event.data, ev.Delivered):
            break
        streak += 1
    if streak == 0 or streak > REDELIVERIES:
        return None
    last = failures[-1]
    assert isinstance(last.data, ev.DeliveryFailed)
    if last.data.kind not in PASSING:
        return None
    return last.data.retry_at or last.ts + BACKOFF_S * 2 ** (streak - 1)


def deliver(ledger: Ledger, run_ref: str, policy: DeliveryPolicy | None = None,
            environ: Mapping[str, str] | None = None) -> ev.Delivered:
    """Deliver one run (the policy it ran with, unless another is given); raises DeliveryError,
    recorded as `delivery_failed`, when it cannot."""
    environ = os.environ if environ is None else environ
    run = ledger.get_run(run_ref)
    events = ledger.events(run.id)
    started, finished = events[0].data if events else None, finished_of(events)
    recorded_policy = run_policy(events)
    if not isinstance(started, ev.RunStarted) or started.repo is None or recorded_policy is None:
        raise DeliveryError("config", f"run {run.id} was not made by Tether here; it has no branch to deliver")
    if finished is None or finished.commit is None or finished.branch is None:
        raise DeliveryError("config", f"run {run.id} is {run.status}; a run is delivered once it has ended")
    policy = policy or recorded_policy.delivery
    if started.tier_delivery is not None and DELIVERY_ORDER.index(policy.mode) > DELIVERY_ORDER.index(
            started.tier_delivery):
        raise DeliveryError("config", f"run {run.id} ran at tier {started.tier!r}, which delivers no further than "
                                      f"{started.tier_delivery!r} (a higher tier is earned with tether gate)")
    if policy.mode == "branch":
        raise DeliveryError("config", f"run {run.id} ran with a policy that delivers as a local branch "
                                      f"({finished.branch}); pass --mode push or --mode pull_request to deliver it "
                                      "elsewhere (tether.toml's [delivery] is read by later runs, not this one)")
    if finished.tree is not None and started.base_tree is not None and finished.tree == started.base_tree:
        raise DeliveryError("config", f"run {run.id} changed nothing (its branch holds the base commit's tree): "
                                      "there is nothing to deliver")
    stage = "config"
    try:
        repo = Path(started.repo)
        remote = resolve_remote(repo, policy.remote)
        forge = policy.forge or remote.forge
        if policy.mode == "pull_request" and forge is None:
            if not remote.host:
                raise DeliveryError("config", f"the remote {remote.url} is a path on this machine, not a forge: a pull "
                                              "request needs a GitHub, GitLab or Gitea remote; --mode push pushes "
                                              "the branch there")
            raise DeliveryError("config", f"cannot tell which forge {remote.host} is: set [delivery] forge "
                                          "(github, gitlab or gitea)")
        token = forge_token(policy, forge, environ) if policy.mode == "pull_request" else \
            environ.get(policy.token_env or (DEFAULT_TOKEN_ENV[forge] if forge else ""))
        base = policy.base or started.base_branch
        if policy.mode == "pull_request" and base is None:
            raise DeliveryError("config", "the run started on a detached HEAD: set [delivery] base")
        stage = "push"
        ref = push_branch(repo, remote, finished.branch, finished.commit, base, token)
        if policy.mode == "push":
            delivered = ev.Delivered(mode="push", remote=remote.url, ref=ref, commit=finished.commit)
        else:
            stage = "pull_request"
            assert forge is not None and token is not None and base is not None
            delivered = _pull_request(run, events, recorded_policy, policy, remote, forge, token, base, ref, finished)
    except DeliveryError as exc:
        _record(ledger, run.id, ev.DeliveryFailed(mode=policy.mode, stage=stage, kind=exc.kind, reason=str(exc),
                                                  retry_at=exc.retry_at))
        raise
    _record(ledger, run.id, delivered)
    return delivered


def _pull_request(run: RunRow, events: list, ran_with: Policy, policy: DeliveryPolicy, remote: Remote, forge: str,
                  token: str, base: str, ref: str, finished: ev.RunFinished) -> ev.Delivered:
    started = events[0].data
    summary = summarize(run, events)
    reviewers = _reviewers(ran_with, started, finished, requester_of(events)) if policy.reviewers else []
    request = Request(head=finished.branch or "", base=base, title=evidence.title(started.task),
                      body=evidence.description(summary, events),
                      draft=policy.draft or summary["status"] != "succeeded", labels=policy.labels, reviewers=reviewers)
    opened = open_on(forge, forge_api_url(policy, forge, remote), policy.repository or remote.path, token, request)
    return ev.Delivered(mode="pull_request", remote=remote.url, ref=ref, commit=finished.commit or "", forge=forge,
                        number=opened.number, url=opened.url, created=opened.created, draft=request.draft,
                        labels=request.labels, reviewers=reviewers, warnings=opened.warnings)


def forge_token(policy: DeliveryPolicy, forge: str | None, environ: Mapping[str, str]) -> str:
    """The forge's token, from the environment variable the policy names (never stored)."""
    token_env = policy.token_env or (DEFAULT_TOKEN_ENV[forge] if forge else "")
    token = environ.get(token_env) if token_env else None
    if not token:
        raise DeliveryError("config", f"no forge token: set the environment variable {token_env} "
                                      "([delivery] token_env names it)")
    return token


def forge_api_url(policy: DeliveryPolicy, forge: str, remote: Remote) -> str:
    return policy.api_url or DEFAULT_API[forge].format(host=remote.host)


def review_of(run_id: str, events: list[StoredEvent], environ: Mapping[str, str] | None = None) -> Review | None:
    """Where the run's pull request stands on its forge now (None: it was never opened on one).
    The forge is reached as the run's own policy said when it delivered."""
    opened = next((e.data for e in reversed(events) if isinstance(e.data, ev.Delivered)
                   and e.data.mode == "pull_request" and e.data.forge and e.data.number), None)
    policy = run_policy(events)
    if opened is None or opened.forge is None or opened.number is None or policy is None:
        return None
    remote = parse_remote(opened.remote)
    token = forge_token(policy.delivery, opened.forge, os.environ if environ is None else environ)
    return review_on(opened.forge, forge_api_url(policy.delivery, opened.forge, remote),
                     policy.delivery.repository or remote.path, token, opened.number)


def _reviewers(policy: Policy, started: ev.RunStarted, finished: ev.RunFinished, requester: str | None) -> list[str]:
    """The owners (CODEOWNERS at the base commit, and the policy's protected paths) of the files the
    run touched, less whoever asked for the run: they do not review their own request."""
    repo = Path(started.repo or "")
    try:
        touched = git(repo, "diff", "--name-only", "-z", started.base_commit or "", finished.commit or "").split("\0")
    except GitError:
        return []
    ownership = ownership_at(policy, repo, started.base_commit or "", codeowners=True)
    owners = {owner for path in touched if path for owner in ownership.owners_of(path)}
    return sorted(owner for owner in owners if requester is None or owner.lstrip("@") != requester)


def _record(ledger: Ledger, run_id: str, payload: ev.Payload) -> None:
    """Append to a run that another deliverer may be appending to at the same moment."""
    for tries_left in reversed(range(RECORD_TRIES)):
        try:
            ledger.record(run_id, payload)
            return
        except ConcurrentAppend:
            if not tries_left:
                raise
