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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tether.agents.session import Session
from tether.gateway.agent_tools import agent_of_wire, governed_tools, refused_call, tool_calls
from tether.gateway.dialect import as_tether_request, speaks_tether_actions, to_agent_calls
from tether.gateway.relay import Tally, outgoing, read_reply, route_for
from tether.gateway.upstream import Upstream, UpstreamError
from tether.gateway.wire import Request
from tether.guard.brakes import BrakeHit, Brakes
from tether.guard.budgets import wall_deadline
from tether.guard.decisions import ALLOW, Decision, RunHeld, RunStopped
from tether.guard.fleet import FleetGate
from tether.guard.guard import Guard, describe_action
from tether.guard.runlog import RunLog
from tether.guard.scopes import PathDenied, resolve_in_worktree
from tether.ledger import Ledger, canonical_json
from tether.ledger import events as ev
from tether.ledger.fleet import Fleet, today
from tether.ledger.queries import run_policy
from tether.ledger.store import new_run_id
from tether.models import ModelError, ModelResponse, Provider, ToolCall, make_provider
from tether.models.base import Usage, estimate_tokens
from tether.models.prices import cost_of, estimate_usd
from tether.models.retry import RetriesExhausted, complete_with_retries
from tether.models.tools import WRITE_TOOLS
from tether.policy.load import org_limits
from tether.policy.ownership import Ownership
from tether.policy.schema import Policy

TOKEN_SETTING = "gateway-token:"  # + sha256 of the token; the token itself is never stored
TOKEN_PREFIX = "tg-"
GRANT_TTL_S = 1.0
SWITCH_STALENESS_S = 0.25  # a kill switch turned on stops a session's requests within this


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
    stopped: Decision | None = None  # a budget or brake that ended the run: every later request is refused
    session: Session | None = None  # `tether run --agent`: the run's worktree is measured after each tool
    deferred: Decision | None = None  # the ask an agent's run stopped on, until its owners decide
    hooks: bool = True  # its tool calls come through hooks; else its steps are measured at each model request
    agent: str | None = None  # claude-code or codex (a developer's own session: known by the API it speaks)
    # An allowed call whose result has not come (Codex reports none for a patch): (call id, judged calls).
    unsettled: tuple[str, list[ToolCall]] | None = None
    # A relayed reply the agent already has, recorded right after it was sent (or before the
    # run's next request or hook, whichever comes first).
    unrecorded: Callable[[], None] | None = None


class Gateway:
    def __init__(self, ledger: Ledger, upstream: Provider | None = None):
        self.ledger = ledger
        self.upstream = upstream  # None: each run's recorded model spec
        self.runs: dict[str, GatewayRun] = {}
        self.grants: dict[str, tuple[Grant | None, float]] = {}  # token -> (grant, until)
        self.lock = threading.Lock()
        self.upstream_http = Upstream()  # relayed requests, kept alive

    def attach(self, token: str, session: Session, hooks: bool = True, agent: str | None = None) -> GatewayRun:
        """Serve a token for a run that Tether drives (`tether run --agent`): its requests share the
        run's log, guard and provider, and its tool steps are measured in the run's worktree (after
        each hooked tool call, or, for an agent without hooks, before each model request)."""
        grant = self._granted(token)
        run = GatewayRun(grant, session.log, session.guard, session.provider, session.policy, session=session,
                         hooks=hooks, agent=agent)
        with self.lock:
            self.runs[grant.run_id] = run
        return run

    def grant(self, token: str) -> Grant | None:
        """The token's grant, read from the store at most once a second (a revocation, made by
        another process, takes effect within a second)."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        cached = self.grants.get(token)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        raw = Fleet(self.ledger).setting(_token_key(token))
        data = json.loads(raw) if raw else {}
        grant = Grant(data["run_id"], data["user"], data.get("max_usd_per_day")) \
            if data and not data.get("revoked") else None
        self.grants[token] = (grant, time.monotonic() + GRANT_TTL_S)
        return grant

    def complete(self, token: str, request: Request) -> ModelResponse:
        """Forward one request for the token's run, or raise Refused with the reason."""
        run = self._run(self._granted(token))
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
                                  f"gateway:{grant.user}", grant.run_id, switch_staleness_s=SWITCH_STALENESS_S)
                guard = Guard(policy=policy, ownership=Ownership.build(policy.ownership, None), root=Path("."),
                              fleet=fleet)
                try:
                    provider = self.upstream or make_provider(self.ledger.get_run(grant.run_id).model or "")
                except ModelError as exc:
                    raise Refused("upstream", f"Tether: the run's upstream cannot be used: {exc}") from exc
                self.runs[grant.run_id] = GatewayRun(grant, log, guard, provider, policy)
            return self.runs[grant.run_id]

    def defers(self, token: str) -> bool:
        """Whether an ask is deferred (an agent's run, where the owners decide later) rather than put
        to the person at the agent's keyboard (a developer's own session)."""
        run = self.runs.get(self._granted(token).run_id)
        return run is not None and run.session is not None

    def pre_tool_use(self, token: str, event: dict[str, Any], agent: str = "claude-code") -> Decision:
        """An agent's PreToolUse, put to the run's guard: the call and any refusal are recorded."""
        run = self._run(self._granted(token))
        name, tool_input, call_id = _hook_fields(event)
        with run.lock:
            log = run.log
            self._record_reply(run)  # the call comes after the reply that asked for it
            if run.stopped is not None:
                return Decision("deny", run.stopped.rule, run.stopped.reason)
            if run.deferred is not None:  # Codex goes on after a refused call: nothing more until they decide
                return Decision("deny", run.deferred.rule, f"the run waits for its owners: {run.deferred.reason}")
            self.settle(run)
            step = log.meters.steps
            hit = log.record(ev.ToolCall(step=step, call_id=call_id, name=name, arguments=tool_input))
            if run.session is None and isinstance(event.get("cwd"), str):
                run.guard.root = Path(event["cwd"])  # a developer's own session acts where it runs
            mapped = tool_calls(agent, call_id, name, tool_input, run.policy.commands.network, run.guard.root)
            if isinstance(mapped, Decision):
                decision = mapped
            else:
                decision = _strictest([run.guard.before_tool(call, log.meters, time.time()) for call in mapped])
                if decision.verdict == "allow" and [call.name for call in mapped] == ["remember"]:
                    return self._remember(run, step, mapped[0])
                for shadow in run.guard.take_shadows():
                    log.shadow(shadow.rule, shadow.reason, call_id)
                if decision.verdict == "ask" and run.session is not None:  # a durable approval, nobody waiting
                    # Codex's session asks again with a new call id after a resume: its approval is keyed by
                    # what it does. Claude Code's resumes the very call.
                    key = call_id if agent == "claude-code" else f"{agent}-{_digest([name, tool_input])}"
                    decision = self._ask_owners(run, step, mapped, key, name, decision)
                    if decision.verdict == "ask":
                        return decision  # deferred: the agent stops until the owners decide
            if decision.verdict != "allow":
                log.record(decision.as_event(step, call_id))
            if decision.verdict in ("deny", "stop"):  # it will not run: its result is the refusal, as in a run
                log.record(ev.ToolResult(step=step, call_id=call_id, executed=False, ok=False, exit_code=None,
                                         output_digest=None, duration_s=0.0, tree=None, rework=False,
                                         observation=f"Denied by policy ({decision.rule}): {decision.reason}"))
            if hit is not None:
                decision = self._brake(run, step, call_id, hit)
            elif decision.verdict == "stop":
                run.stopped = decision
                decision = Decision("deny", decision.rule, decision.reason)
            elif decision.verdict == "allow" and run.session is not None:
                run.unsettled = (call_id, [] if isinstance(mapped, Decision) else mapped)
            return decision

    def post_tool_use(self, token: str, event: dict[str, Any], agent: str = "claude-code") -> Decision:
        """An agent's PostToolUse: the result is recorded and fed to the brakes; a brake that fires
        stops the run (this call is answered with the block, every later request is refused)."""
        run = self._run(self._granted(token))
        name, tool_input, call_id = _hook_fields(event)
        response = event.get("tool_response")
        observation = response if isinstance(response, str) else json.dumps(response, sort_keys=True)
        with run.lock:
            self._record_reply(run)
            if run.unsettled is not None and run.unsettled[0] == call_id:
                judged = run.unsettled[1]
            else:
                mapped = tool_calls(agent, call_id, name, tool_input, run.policy.commands.network, run.guard.root)
                judged = [] if isinstance(mapped, Decision) else mapped
            return self._result(run, call_id, judged, observation)

    def _remember(self, run: GatewayRun, step: int, call: ToolCall) -> Decision:
        """Keep an agent's note (the guard allowed it) and answer so that its command is not run."""
        door = run.guard.memory if run.session is not None else None
        entry = door.keep(call.arguments["text"], call.id) if door is not None else None
        if entry is not None and door is not None and door.replaying is None:
            run.log.record(ev.MemoryWritten(entry_id=entry.id, text=entry.text, call_id=call.id,
                                            state="pending" if entry.state == "pending" else "active"))
        said = f"Tether kept the note as {entry.id}" if entry is not None else "this session keeps no memory"
        run.log.record(ev.ToolResult(step=step, call_id=call.id, executed=False, ok=entry is not None, exit_code=None,
                                     output_digest=None, duration_s=0.0, tree=None, rework=False, observation=said))
        return Decision("deny", "memory.kept" if entry is not None else "memory.off",
                        f"{said}; the command itself is not run")

    def _record_reply(self, run: GatewayRun) -> None:
        """Record the relayed reply the agent already has, if it is not yet (under the run's lock)."""
        pending, run.unrecorded = run.unrecorded, None
        if pending is not None:
            pending()

    def settle(self, run: GatewayRun) -> None:
        """Record the result of an allowed call whose agent reported none (Codex, for a patch it
        applies), measuring what it changed; called before the agent's next call or request."""
        self._record_reply(run)
        if run.unsettled is not None:
            call_id, judged = run.unsettled
            self._result(run, call_id, judged, "(the agent reported no result for this call)")

    def _result(self, run: GatewayRun, call_id: str, judged: list[ToolCall], observation: str) -> Decision:
        run.unsettled = None
        step = run.log.meters.steps
        tree, changed, refusal = self.measure_worktree(run, step, call_id, judged) if run.session is not None \
            else (None, [], None)
        if refusal is not None:
            observation += f"\n\n[tether] This step was rolled back: {refusal.reason}"
        hit = run.log.record(ev.ToolResult(
            step=step, call_id=call_id, executed=True, ok=None if refusal is None else False, exit_code=None,
            duration_s=0.0, tree=tree, changed=changed, rework=False,
            output_digest=hashlib.sha256(observation.encode()).hexdigest(), observation=observation[-20_000:]))
        if hit is not None:
            return self._brake(run, step, call_id, hit)
        return refusal or ALLOW

    def measure_worktree(self, run: GatewayRun, step: int, call_id: str,
                         judged: list[ToolCall] = ()) -> tuple[str, list[str], Decision | None]:
        """What an external agent's tool step changed in the run's worktree, judged as a command's
        changes are (write rules, owners, caps, the day's lines), or, for write tools that changed
        only their own files (already judged, and approved if owned), by caps; refused changes are
        rolled back."""
        session = run.session
        assert session is not None
        previous = session.tree
        tree = session.worktree.snapshot()
        if tree == previous:
            return tree, [], None
        changed = session.worktree.diff(previous, tree).paths
        total = session.worktree.diff(session.base_tree, tree) if run.guard.needs_total else None
        written = {_relative(session.worktree.path, call.arguments.get("path")) for call in judged
                   if call.name in WRITE_TOOLS}
        own_files = bool(written) and set(changed) <= written
        deleted = session.worktree.deleted(previous, tree) if run.guard.judges_deletions else []
        refusal = run.guard.after_tool(judged[0] if own_files else ToolCall(call_id, "bash", {}), changed,
                                       total=total, deleted=deleted)
        if refusal is not None and refusal.verdict == "ask":  # an agent's step cannot wait after the fact
            refusal = Decision("deny", refusal.rule, f"{refusal.reason}; an external agent's deletion cannot wait "
                               "for it, so it was undone", refusal.paths, refusal.owners)
        if refusal is None:
            session.tree = tree
            return tree, changed, None
        session.worktree.restore(previous)
        run.log.record(refusal.as_event(step, call_id, rolled_back=True))
        return previous, [], refusal

    def _ask_owners(self, run: GatewayRun, step: int, calls: list[ToolCall], key: str, tool: str,
                    ask: Decision) -> Decision:
        """An owned path in an agent's run: the request is recorded once under `key` and the call
        deferred (the agent stops; `tether approve` or `deny` decides; the agent's session resumes
        and asks again, and the recorded decision answers)."""
        decided = run.log.decided.get(key)
        if decided is not None:
            return run.guard.decide(ask, decided)
        timeout = run.policy.approvals.timeout_s
        run.log.record(ask.as_event(step, calls[0].id))
        run.log.record(ev.ApprovalRequested(
            verdict="ask", rule=ask.rule, reason=ask.reason, paths=ask.paths, owners=ask.owners, call_id=key,
            step=step, tool=tool, action="; ".join(describe_action(call) for call in calls),
            diff="".join(run.guard.proposed_diff(call) for call in calls if call.name in WRITE_TOOLS),
            model_reason=run.session.last_reply[-2000:] if run.session else "",
            deadline=time.time() + timeout if timeout else None))
        run.deferred = ask
        return ask

    def _brake(self, run: GatewayRun, step: int, call_id: str | None, hit: BrakeHit) -> Decision:
        run.log.record(ev.Brake(detector=hit.detector, reason=hit.reason, evidence=hit.evidence, call_id=call_id,
                                step=step))
        run.stopped = Decision("stop", f"brakes.{hit.detector}", hit.reason)
        return Decision("deny", run.stopped.rule, hit.reason)

    def _granted(self, token: str) -> Grant:
        grant = self.grant(token)
        if grant is None:
            raise Refused("auth", "Tether: unknown or revoked gateway token")
        return grant

    def _refuse(self, run: GatewayRun, decision: Decision) -> Refused:
        run.log.record(decision.as_event(run.log.meters.steps), once=False)  # every refused request
        return Refused("policy", f"Tether: {decision.rule}: {decision.reason}")

    def _governed(self, run: GatewayRun, wire_name: str, tools: list[Any]) -> tuple[str | None, list[Any], list[str]]:
        """(the agent, the tools it may offer its model, the names taken out): an agent with hooks
        offers only tools whose calls reach them."""
        agent = run.agent or agent_of_wire(wire_name)
        if not run.hooks or agent is None:
            return agent, tools, []
        kept, removed = governed_tools(agent, tools, run.policy.commands.network)
        return agent, kept, removed

    def _refuse_calls(self, run: GatewayRun, step: int, agent: str | None, response: ModelResponse) -> ModelResponse:
        """The reply without the calls the agent must not execute (each recorded as denied)."""
        if agent is None or not run.hooks:
            return response
        kept = []
        for call in response.tool_calls:
            refusal = refused_call(agent, call, run.policy.commands.network)
            if refusal is None:
                kept.append(call)
            else:
                run.log.record(refusal.as_event(step, call.id))
        return replace(response, tool_calls=kept) if len(kept) != len(response.tool_calls) else response

    def _complete(self, run: GatewayRun, request: Request) -> ModelResponse:
        agent_name, kept, removed = self._governed(run, request.wire, [{"name": t.name} for t in request.tools])
        offered = {str(tool["name"]) for tool in kept}
        request = replace(request, tools=[tool for tool in request.tools if tool.name in offered])
        step = self._admit(run, request, removed)
        provider, agent = run.provider, run.policy.agent
        local = speaks_tether_actions(provider)
        messages, tools = as_tether_request(request) if local else (request.messages, request.tools)
        deadline = wall_deadline(run.log.meters, run.policy.budget, time.time())
        try:
            response, latency = complete_with_retries(provider, messages, tools, request.max_tokens,
                                                      agent.max_retries, agent.retry_base_s,
                                                      run.log.model_errors(step),
                                                      deadline=deadline)
        except (RetriesExhausted, ModelError) as exc:
            self._unanswered(run)
            raise Refused("upstream", f"Tether: the upstream model failed: {exc}") from exc
        if local:
            response = to_agent_calls(response, request, run.guard.root)
        response = self._refuse_calls(run, step, agent_name, response)
        self._answered(run, step, response, latency)
        return response

    def relay(self, token: str, request: Request, body: dict[str, Any], headers: Mapping[str, str]) -> Relayed | None:
        """Forward the agent's request as it is, when the upstream speaks the agent's API (else None:
        the caller translates it, `complete`), after the same checks and record as a translated one;
        the reply, or the upstream's own error, comes back as the upstream sent it. A stream is passed
        on as it arrives and recorded when it ends, or breaks."""
        run = self._run(self._granted(token))
        route = route_for(run.provider, request.wire, headers)
        if route is None:
            return None
        sent = outgoing(body, route, request.wire, run.policy.commands.network)
        agent, kept, removed = self._governed(run, request.wire, sent.get("tools") or [])
        if removed:
            sent["tools"] = kept
        with run.lock:
            step = self._admit(run, request, removed)
        started = time.perf_counter()
        try:
            upstream = self.upstream_http.post(route.url, json.dumps(sent).encode(), route.headers)
            whole = upstream.status >= 400 or not request.stream
            content = upstream.read() if whole else b""
        except UpstreamError as exc:
            with run.lock:
                self._upstream_failed(run, step, str(exc), transient=True)
            raise Refused("upstream", f"Tether: the upstream model could not be reached: {exc}") from exc
        passed = {name: upstream.headers[name] for name in ("retry-after", "request-id", "x-request-id")
                  if name in upstream.headers}
        if whole:
            reply = _json(content) if upstream.status < 400 else None
            with run.lock:
                if upstream.status >= 400:  # the agent reads its upstream's error and does what it does
                    self._upstream_failed(run, step, f"HTTP {upstream.status}: {content[:500]!r}",
                                          transient=upstream.status == 429 or upstream.status >= 500)
                elif not isinstance(reply, dict):
                    self._upstream_failed(run, step, f"not a JSON reply: {content[:500]!r}", transient=True)
                    raise Refused("upstream", "Tether: the upstream model's reply is not JSON")
                else:  # sent first: the record is one append the agent need not wait for
                    latency = time.perf_counter() - started
                    run.unrecorded = lambda: self._answered(
                        run, step, self._checked(run, step, agent, read_reply(request.wire, reply)), latency)

            def recorded() -> None:
                with run.lock:
                    self._record_reply(run)
            return Relayed(upstream.status, upstream.headers.get("content-type", "application/json"), passed,
                           content=content, finish=recorded)

        tally = Tally(request.wire)
        finished = threading.Event()

        def chunks() -> Iterator[bytes]:
            for chunk in upstream.chunks():
                tally.feed(chunk)
                yield chunk

        def finish() -> None:
            """The whole stream was passed on, or the agent or the upstream broke it off: what came is
            recorded, once."""
            if finished.is_set():
                return
            finished.set()
            upstream.close()
            with run.lock:
                self._answered(run, step, self._checked(run, step, agent, tally.reply()),
                               time.perf_counter() - started)
        return Relayed(200, "text/event-stream", passed, chunks=chunks(), finish=finish)

    def _checked(self, run: GatewayRun, step: int, agent: str | None, response: ModelResponse) -> ModelResponse:
        """A relayed reply has reached the agent as the upstream wrote it: a call in it that the agent
        must not execute is recorded, and the run stops at the agent's next request."""
        checked = self._refuse_calls(run, step, agent, response)
        if len(checked.tool_calls) != len(response.tool_calls) and run.stopped is None:
            run.stopped = Decision("stop", "tools.removed", "the model called a tool whose calls reach no hook")
        return response

    def _admit(self, run: GatewayRun, request: Request, tools_removed: list[str] = ()) -> int:
        """Put a model request to the run's brakes, budgets, the user's day and the fleet, and record
        it: its step. Refused when it may not go; else the caller answers it (`_answered`) or not
        (`_unanswered`, `_upstream_failed`), which frees what the fleet held for it."""
        log, provider = run.log, run.provider
        self._record_reply(run)  # a brake on the last reply stops this request
        if run.stopped is not None:
            raise self._refuse(run, run.stopped)
        if run.deferred is not None:  # the approval request is the record; the agent is to end here
            raise Refused("policy", f"Tether: the run waits for its owners to approve: {run.deferred.reason}")
        self.settle(run)
        if run.session is not None and not run.hooks:  # what it did since its last request is one step
            _, _, refusal = self.measure_worktree(run, log.meters.steps, f"step-{log.meters.steps}")
            if refusal is not None:
                run.stopped = Decision("stop", refusal.rule, f"{refusal.reason} (rolled back)", refusal.paths)
                raise Refused("policy", f"Tether: {refusal.rule}: {refusal.reason}; the change was rolled back "
                                        "and the run stops")
        prompt_text = canonical_json(request.messages)
        prompt_tokens = estimate_tokens(prompt_text)
        prompt_usd = estimate_usd(provider.name, Usage(prompt_tokens, 0))
        reply_usd = estimate_usd(provider.name, Usage(0, request.max_tokens))
        decision = run.guard.before_model(log.meters, prompt_tokens, prompt_usd, time.time(), reply_usd)
        for shadow in run.guard.take_shadows():
            log.shadow(shadow.rule, shadow.reason)
        if decision.verdict == "stop":
            run.stopped = decision
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
            fleet.before_step(estimate_usd(provider.name, Usage(prompt_tokens, request.max_tokens)))
        except (RunHeld, RunStopped) as held:
            decision = Decision("stop", held.rule, held.reason)
            if run.session is not None:  # an agent's run ends here; a developer's session waits for release
                run.stopped = decision
            raise self._refuse(run, decision) from held
        step = log.meters.steps + 1
        log.model_request(step, len(request.messages), prompt_text, prompt_tokens, tools_removed)
        return step

    def _answered(self, run: GatewayRun, step: int, response: ModelResponse, latency: float) -> None:
        priced = response.cost_usd if response.cost_usd is not None else cost_of(run.provider.name, response.usage)
        self._unanswered(run, priced or 0.0)
        run.spent_today += priced or 0.0
        hit = run.log.model_response(step, response, priced, latency)
        if hit is not None:
            self._brake(run, step, None, hit)

    def _unanswered(self, run: GatewayRun, cost: float = 0.0) -> None:
        fleet = run.guard.fleet
        assert fleet is not None
        fleet.after_step(cost)

    def _upstream_failed(self, run: GatewayRun, step: int, error: str, transient: bool) -> None:
        self._unanswered(run)
        run.log.record(ev.ModelError(step=step, attempt=1, error=error, transient=transient, retry_in_s=None),
                       once=False)


@dataclass(frozen=True)
class Relayed:
    """A relayed reply: the upstream's status, content type and the headers worth passing on, and its
    body whole (`content`) or as it streams (`chunks`)."""
    status: int
    media_type: str
    headers: dict[str, str]
    content: bytes = b""
    chunks: Iterator[bytes] | None = None
    finish: Callable[[], None] = lambda: None  # after the last chunk, or when the stream is broken off


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _strictest(decisions: list[Decision]) -> Decision:
    """One decision for the calls one tool call makes: a refusal of any, else one ask for all the
    owned paths, else allow."""
    refusal = next((d for d in decisions if d.verdict in ("deny", "stop")), None)
    if refusal is not None:
        return refusal
    asks = [d for d in decisions if d.verdict == "ask"]
    if not asks:
        return ALLOW
    return Decision("ask", asks[0].rule, "; ".join(d.reason for d in asks),
                    list(dict.fromkeys(p for d in asks for p in d.paths)),
                    list(dict.fromkeys(o for d in asks for o in d.owners)))


def _digest(value: object) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:16]


def _hook_fields(event: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """(tool name, its input, the call's id) of a hook event; HookError when they are missing."""
    name, tool_input, call_id = event.get("tool_name"), event.get("tool_input"), event.get("tool_use_id")
    if not isinstance(name, str) or not name:
        raise HookError("tool_name: expected the tool's name")
    if not isinstance(tool_input, dict):
        raise HookError("tool_input: expected an object")
    return name, tool_input, call_id if isinstance(call_id, str) and call_id else f"hook-{secrets.token_hex(6)}"


class HookError(ValueError):
    """A hook event the gateway cannot read; the message names the field."""


def _relative(root: Path, path: object) -> str | None:
    try:
        return resolve_in_worktree(root, path) if isinstance(path, str) else None
    except PathDenied:
        return None
