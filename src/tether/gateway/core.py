"""The model gateway's logic, apart from HTTP: each request comes with a run-scoped token (the only
key the agent ever sees), is put to the run's guard (budgets, the developer's daily USD, the
fleet's kill switch and daily limits), forwarded to the upstream Tether knows, and recorded in
the run's log as model_request and model_response events. A refusal says why, in words the agent
shows to its user. The real provider key stays in this process."""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tether.gateway.wire import Request
from tether.guard.brakes import Brakes
from tether.guard.decisions import Decision, RunHeld, RunStopped
from tether.guard.fleet import FleetGate
from tether.guard.guard import Guard
from tether.guard.runlog import RunLog
from tether.ledger import Ledger, canonical_json
from tether.ledger import events as ev
from tether.ledger.fleet import Fleet, today
from tether.ledger.queries import run_policy
from tether.ledger.store import new_run_id
from tether.models import ModelError, ModelResponse, Provider, TransientModelError, make_provider
from tether.models.base import Usage, estimate_tokens
from tether.models.prices import cost_of
from tether.models.retry import RetriesExhausted, complete_with_retries
from tether.policy.load import org_limits
from tether.policy.ownership import Ownership
from tether.policy.schema import Policy

TOKEN_SETTING = "gateway-token:"  # + sha256 of the token; the token itself is never stored
TOKEN_PREFIX = "tg-"


class Refused(Exception):
    """A request the gateway will not forward, and the reason the agent shows. `kind` is "policy"
    (a budget, a limit, a brake, the kill switch), "auth" (the token) or "upstream" (the model)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Grant:
    run_id: str
    user: str
    max_usd_per_day: float | None = None


def _token_key(token: str) -> str:
    return TOKEN_SETTING + hashlib.sha256(token.encode()).hexdigest()


def default_policy() -> Policy:
    """A developer's session is limited by money (the daily USD), not by steps; and an interactive
    agent may answer without a tool call as often as it likes."""
    return Policy.model_validate({"budget": {"max_steps": None, "max_tool_calls": None},
                                  "brakes": {"max_turns_without_action": None}})


def issue_token(ledger: Ledger, user: str, upstream: str, policy: Policy | None = None,
                max_usd_per_day: float | None = None, run_id: str | None = None) -> tuple[str, str]:
    """A new token and the run its requests are recorded in: (token, run id). Only the token's
    hash is kept."""
    run_id = run_id or new_run_id()
    policy = policy or default_policy()
    if not ledger.has_run(run_id):
        ledger.create_run(run_id, repo=f"gateway:{user}", instruction=f"model gateway session of {user}",
                          source="gateway", model=upstream, architecture="external")
        ledger.record(run_id, ev.RunStarted(schema_version=ev.SCHEMA_VERSION, task=f"gateway session of {user}",
                                            model=upstream, architecture="external",
                                            policy=policy.model_dump(mode="json"), user=user, source="gateway"))
    token = TOKEN_PREFIX + secrets.token_urlsafe(24)
    grant = {"run_id": run_id, "user": user, "max_usd_per_day": max_usd_per_day}
    Fleet(ledger).set_setting(_token_key(token), json.dumps(grant))
    return token, run_id


def revoke_token(ledger: Ledger, token: str) -> bool:
    fleet = Fleet(ledger)
    if fleet.setting(_token_key(token)) is None:
        return False
    fleet.set_setting(_token_key(token), json.dumps({"revoked": True}))
    return True


@dataclass
class GatewayRun:
    grant: Grant
    log: RunLog
    guard: Guard
    provider: Provider
    policy: Policy
    lock: threading.Lock = field(default_factory=threading.Lock)
    day: str = ""
    spent_today: float = 0.0
    stopped: str | None = None  # why a brake ended the run: every later request is refused


class Gateway:
    def __init__(self, ledger: Ledger, upstream: Provider | None = None):
        self.ledger = ledger
        self.upstream = upstream  # None: each run's recorded model spec
        self.runs: dict[str, GatewayRun] = {}
        self.lock = threading.Lock()

    def grant(self, token: str) -> Grant | None:
        if not token.startswith(TOKEN_PREFIX):
            return None
        raw = Fleet(self.ledger).setting(_token_key(token))
        data = json.loads(raw) if raw else {}
        if not data or data.get("revoked"):
            return None
        return Grant(data["run_id"], data["user"], data.get("max_usd_per_day"))

    def complete(self, token: str, request: Request) -> ModelResponse:
        """Forward one request for the token's run, or raise Refused with the reason."""
        grant = self.grant(token)
        if grant is None:
            raise Refused("auth", "Tether: unknown or revoked gateway token")
        run = self._run(grant)
        with run.lock:
            return self._complete(run, request)

    def _run(self, grant: Grant) -> GatewayRun:
        with self.lock:
            if grant.run_id not in self.runs:
                events = self.ledger.events(grant.run_id)
                policy = run_policy(events) or default_policy()
                log = RunLog(grant.run_id, self.ledger, Brakes(policy.brakes))
                log.replay(events)
                fleet = FleetGate(Fleet(self.ledger), org_limits(Fleet(self.ledger).org_policy()),
                                  f"gateway:{grant.user}", grant.run_id)
                guard = Guard(policy=policy, ownership=Ownership.build(policy.ownership, None), root=Path("."),
                              fleet=fleet)
                provider = self.upstream or make_provider(self.ledger.get_run(grant.run_id).model or "")
                self.runs[grant.run_id] = GatewayRun(grant, log, guard, provider, policy)
            return self.runs[grant.run_id]

    def _refuse(self, run: GatewayRun, decision: Decision) -> Refused:
        run.log.record(decision.as_event(run.log.meters.steps), once=False)  # every refused request
        return Refused("policy", f"Tether: {decision.rule}: {decision.reason}")

    def _complete(self, run: GatewayRun, request: Request) -> ModelResponse:
        log, provider = run.log, run.provider
        if run.stopped is not None:
            raise Refused("policy", f"Tether: {run.stopped}")
        prompt_text = canonical_json(request.messages)
        prompt_tokens = estimate_tokens(prompt_text)
        prompt_usd = cost_of(provider.name, Usage(prompt_tokens, 0)) or 0.0
        decision = run.guard.before_model(log.meters, prompt_tokens, prompt_usd, time.time())
        if decision.verdict == "stop":
            raise self._refuse(run, decision)
        if run.day != today():
            run.day, run.spent_today = today(), 0.0
        limit = run.grant.max_usd_per_day
        if limit is not None and run.spent_today + prompt_usd > limit:
            raise self._refuse(run, Decision("stop", "gateway.max_usd_per_day",
                                             f"{run.grant.user} spent ${run.spent_today:.4f} of ${limit:.2f} today"))
        fleet = run.guard.fleet
        assert fleet is not None
        try:
            fleet.before_step(cost_of(provider.name, Usage(prompt_tokens, request.max_tokens)) or 0.0)
        except (RunHeld, RunStopped) as held:
            raise self._refuse(run, Decision("stop", held.rule, held.reason)) from held
        step = log.meters.steps + 1
        log.record(ev.ModelRequest(step=step, messages=len(request.messages), prompt_tokens_est=prompt_tokens,
                                   messages_digest=hashlib.sha256(prompt_text.encode()).hexdigest()))

        def on_error(attempt: int, error: ModelError, retry_in_s: float | None) -> None:
            log.record(ev.ModelError(step=step, attempt=attempt, error=str(error),
                                     transient=isinstance(error, TransientModelError), retry_in_s=retry_in_s))

        agent = run.policy.agent
        cost = 0.0
        try:
            response, latency = complete_with_retries(provider, request.messages, request.tools, request.max_tokens,
                                                      agent.max_retries, agent.retry_base_s, on_error)
            priced = response.cost_usd if response.cost_usd is not None else cost_of(provider.name, response.usage)
            cost = priced or 0.0
        except (RetriesExhausted, ModelError) as exc:
            raise Refused("upstream", f"Tether: the upstream model failed: {exc}") from exc
        finally:
            fleet.after_step(cost)
        run.spent_today += cost
        hit = log.record(ev.ModelResponse(
            step=step, model=response.model, content=response.content,
            tool_calls=[ev.RecordedCall(**call.as_dict()) for call in response.tool_calls],
            usage=ev.RecordedUsage(input_tokens=response.usage.input_tokens,
                                   output_tokens=response.usage.output_tokens, estimated=response.usage.estimated),
            cost_usd=cost, price_known=priced is not None, latency_s=round(latency, 4)))
        if hit is not None:
            log.record(ev.Brake(detector=hit.detector, reason=hit.reason, evidence=hit.evidence, call_id=None,
                                step=step))
            run.stopped = f"brakes.{hit.detector}: {hit.reason}"
        return response
