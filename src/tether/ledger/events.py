"""The event vocabulary: every event type a run's log may hold and the shape of its payload.

This is the public contract of the log (`tether schema events` prints it as JSON Schema). Writers
build payloads from these models, which refuse unknown fields and wrong types; a payload is stored
with the fields its writer set. Readers read typed fields through `read_payload`, which is
tolerant: logs written by earlier versions (fields missing, fields since removed, conventions
that lived in strings) still load, and `run_started.schema_version` says which version wrote them.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tether.errors import TetherError

SCHEMA_VERSION = 1  # 0: logs written before the vocabulary was typed


class EventType(StrEnum):
    RUN_STARTED = "run_started"
    ENVIRONMENT_SETUP = "environment_setup"
    ENVIRONMENT = "environment"
    MODEL_REQUEST = "model_request"
    MODEL_RESPONSE = "model_response"
    MODEL_ERROR = "model_error"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    POLICY_DECISION = "policy_decision"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVAL_ESCALATED = "approval_escalated"
    APPROVAL_DECIDED = "approval_decided"
    CHECK_STARTED = "check_started"
    CHECK_FINISHED = "check_finished"
    BRAKE = "brake"
    BRAKE_SHADOWED = "brake_shadowed"
    PLAN = "plan"
    HANDOVER = "handover"
    MERGE = "merge"
    ATTEMPT_STARTED = "attempt_started"
    ATTEMPT_ENDED = "attempt_ended"
    METRIC_MEASURED = "metric_measured"
    RESEARCH_ITERATION = "research_iteration"
    CANDIDATE_SCORED = "candidate_scored"
    JUDGE_INPUTS = "judge_inputs"
    CANDIDATE_BEHAVIOUR = "candidate_behaviour"
    JUDGE_DECIDED = "judge_decided"
    DELIVERED = "delivered"
    DELIVERY_FAILED = "delivery_failed"
    OUTCOME_REPORTED = "outcome_reported"
    OUTCOMES_REFRESHED = "outcomes_refreshed"
    TIER_CHANGED = "tier_changed"
    CANARY_STARTED = "canary_started"
    CANARY_DECIDED = "canary_decided"
    TOKEN_CREATED = "token_created"
    TOKEN_REVOKED = "token_revoked"
    SWITCH_SET = "switch_set"
    SWITCH_RELEASED = "switch_released"
    REFLECTING = "reflecting"
    MEMORY_WRITTEN = "memory_written"
    MEMORY_REVIEWED = "memory_reviewed"
    RUN_PAUSED = "run_paused"
    RUN_CONTINUED = "run_continued"
    RUN_RESUMED = "run_resumed"
    RUN_FINISHED = "run_finished"


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"  # by a brake, a budget, a person or the kill switch; work kept
    AWAITING_APPROVAL = "awaiting_approval"
    WAITING = "waiting"  # held by a fleet limit or a failing model, resumed when it clears
    UNLABELLED = "unlabelled"  # an imported run whose outcome its source did not say


Verdict = Literal["allow", "deny", "ask", "stop"]


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: ClassVar[EventType]
    role: str | None = Field(None, description="the acting role of the orchestrated architecture")

    def as_json(self) -> dict[str, Any]:
        """What is stored: the fields the writer set (readers fill in the defaults)."""
        return self.model_dump(mode="json", exclude_unset=True)


class RunStarted(Payload):
    type = EventType.RUN_STARTED
    schema_version: int = 0
    task: str
    repo: str | None = None
    base_commit: str | None = None
    base_tree: str | None = None
    branch: str | None = None
    worktree: str | None = None
    model: str | None = None
    base_url: str | None = None
    architecture: str | None = None
    policy: dict[str, Any] | None = None
    policy_file: str | None = None
    policy_sha256: str | None = None
    system_prompt: str | None = None
    context: str | None = Field(None, description="what the agent was shown after the task: the files the "
                                "task names ([agent] show_named_files)")
    memory: list[dict[str, str]] | None = Field(None, description="the memory entries the run was given at its "
                                                  "start ({id, text}), in the order shown; part of `context`")
    sandbox: dict[str, Any] | None = None
    user: str | None = None
    requested_by: str | None = Field(None, description="who asked for the run (a queued task's submitter); "
                                     "never counted as its approver")
    base_branch: str | None = Field(None, description="the branch checked out at the start; a pull request targets it")
    repo_url: str | None = Field(None, description="the URL a queued task named; `repo` is then the worker's "
                                 "checkout of it, and the runs table knows the run by the URL")
    configuration: str | None = Field(None, description="architecture, model and agent settings digest: "
                                      "with the repository, what a permission tier is earned by")
    tier: str | None = Field(None, description="the permission tier the run ran at (None: the org has no tiers)")
    tier_delivery: Literal["branch", "push", "pull_request"] | None = Field(
        None, description="the furthest its tier lets the run's work be delivered, even by hand")
    canary: str | None = Field(None, description="the canary that routed this queued task, with `arm`")
    arm: Literal["candidate", "current"] | None = None
    source: str = "live"
    parent_run_id: str | None = None
    # imported runs (backtests): another agent's trajectory
    imported: bool = False
    path: str | None = None
    instance_id: str | None = None
    agent: str | None = None
    notes: list[str] = Field(default_factory=list)


class EnvironmentSetup(Payload):
    type = EventType.ENVIRONMENT_SETUP
    name: str = Field(description="the setup command")
    exit_code: int | None
    ok: bool
    duration_s: float
    output_tail: str = ""


class Environment(Payload):
    """The project's environment a run works with, built from its base commit (never from the
    agent's files): what was detected, whether it was built now, and the files its build generated
    in the source tree that are laid into the worktree and every check's folder."""
    type = EventType.ENVIRONMENT
    kind: str
    note: str
    built: bool
    folder: str | None
    setup: list[str]
    inputs: list[str]
    generated: list[str] = Field(default_factory=list)


class ModelRequest(Payload):
    type = EventType.MODEL_REQUEST
    step: int
    messages: int
    prompt_tokens_est: int
    messages_digest: str
    tools_removed: list[str] = Field(default_factory=list, description="tools an external agent offered its "
                                     "model that the gateway took out (their calls would reach no hook)")


class RecordedCall(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    name: str
    arguments: dict[str, Any]


class RecordedUsage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False


class ModelResponse(Payload):
    type = EventType.MODEL_RESPONSE
    step: int
    model: str
    content: str
    tool_calls: list[RecordedCall]
    usage: RecordedUsage
    cost_usd: float
    price_known: bool
    latency_s: float


class ModelError(Payload):
    type = EventType.MODEL_ERROR
    step: int
    attempt: int
    error: str
    transient: bool
    retry_in_s: float | None = None


class ToolCall(Payload):
    type = EventType.TOOL_CALL
    step: int
    call_id: str
    name: str
    arguments: dict[str, Any]


class ToolResult(Payload):
    type = EventType.TOOL_RESULT
    step: int
    call_id: str
    executed: bool
    ok: bool | None = Field(description="None: an imported step whose format does not say")
    exit_code: int | None
    output_digest: str | None
    duration_s: float
    tree: str | None
    changed: list[str] = Field(default_factory=list)
    observation: str
    rework: bool = Field(False, description="a submit the required checks sent back")
    timed_out: bool = Field(False, description="the command ran past its timeout and was killed, with "
                            "everything it started")

    @model_validator(mode="before")
    @classmethod
    def _rework_from_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and "rework" not in data:  # before v1 only the text said so
            data = {**data, "rework": str(data.get("observation", "")).startswith("Required checks failed")}
        return data


class PolicyDecision(Payload):
    type = EventType.POLICY_DECISION
    verdict: Verdict
    rule: str = ""
    reason: str = ""
    paths: list[str] = Field(default_factory=list)
    owners: list[str] = Field(default_factory=list)
    call_id: str | None = None
    step: int | None = None
    rolled_back: bool = False


class ApprovalRequested(Payload):
    type = EventType.APPROVAL_REQUESTED
    verdict: Verdict = "ask"
    rule: str
    reason: str
    paths: list[str] = Field(default_factory=list)
    owners: list[str] = Field(default_factory=list)
    call_id: str
    step: int
    tool: str = ""
    action: str
    diff: str = ""
    model_reason: str = ""
    deadline: float | None = None


class ApprovalEscalated(Payload):
    type = EventType.APPROVAL_ESCALATED
    call_id: str
    owners: list[str]
    from_owners: list[str]
    deadline: float | None


class ApprovalDecided(Payload):
    type = EventType.APPROVAL_DECIDED
    call_id: str
    approved: bool
    by: str
    reason: str
    by_person: bool = Field(description="False when Tether decided (a timeout, an unattended run)")
    via: Literal["os_user", "token"] | None = Field(
        None, description="how the decider was authenticated: the OS user running `tether approve`, or a "
        "token; None for a decision taken at the run's own terminal, or by Tether")
    acting: str | None = Field(None, description="the admin who recorded this decision on behalf of `by`")

    @model_validator(mode="before")
    @classmethod
    def _person_from_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "by_person" not in data:  # before v1 Tether's names began "tether"
            data = {**data, "by_person": not str(data.get("by", "")).startswith("tether")}
        return data


class CheckStarted(Payload):
    type = EventType.CHECK_STARTED
    name: str
    command: str
    call_id: str | None


class CheckFinished(Payload):
    type = EventType.CHECK_FINISHED
    name: str
    call_id: str | None
    required: bool
    passed: bool
    exit_code: int | None
    timed_out: bool = False
    duration_s: float = 0.0
    output_digest: str | None = None
    output_tail: str = ""


class Brake(Payload):
    type = EventType.BRAKE
    detector: str
    reason: str
    evidence: dict[str, Any]
    call_id: str | None
    step: int


class BrakeShadowed(Payload):
    """A brake or budget in shadow mode would have stopped the run here (the first time each one
    would have); the run went on. `detector` is the brake's name or the budget's rule."""
    type = EventType.BRAKE_SHADOWED
    detector: str
    reason: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    call_id: str | None = None
    step: int


class Plan(Payload):
    type = EventType.PLAN
    step: int
    fallback: bool
    subtasks: list[dict[str, Any]]


class Handover(Payload):
    type = EventType.HANDOVER
    name: str
    tree: str
    commit: str
    branch: str
    reason: str
    diffstat: dict[str, int]


class Merge(Payload):
    type = EventType.MERGE
    name: str
    branch: str
    merged: bool
    conflicts: list[str]
    tree: str
    reason: str


class AttemptStarted(Payload):
    """One of `[agent] attempts` independent tries begins, from `tree` (the base; for research, the
    best tree so far), with a fresh conversation and its own seed; the step budget and the brakes
    count from here."""

    type = EventType.ATTEMPT_STARTED
    attempt: int = Field(ge=0)
    tree: str


class AttemptEnded(Payload):
    """A try that did not pass the required checks: why it ended, and the tree it left (the next
    attempt starts again from the base)."""

    type = EventType.ATTEMPT_ENDED
    attempt: int = Field(ge=0)
    reason: str
    rule: str
    tree: str


class Delivered(Payload):
    """The run's branch left the machine: pushed (`mode` push) and, for `pull_request`, one request
    opened (`created`) or updated on the forge. `remote` never carries credentials."""

    type = EventType.DELIVERED
    mode: Literal["push", "pull_request"]
    remote: str
    ref: str
    commit: str
    forge: str | None = None
    number: int | None = None
    url: str | None = None
    created: bool = False
    draft: bool = False
    labels: list[str] = Field(default_factory=list)
    reviewers: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list, description="labels or reviewers the forge refused")


class DeliveryFailed(Payload):
    """Delivery did not finish; the run keeps its branch, and `tether deliver RUN` tries again."""

    type = EventType.DELIVERY_FAILED
    mode: Literal["push", "pull_request"]
    stage: Literal["config", "push", "pull_request"]
    kind: Literal["config", "auth", "not_found", "conflict", "invalid", "rate_limit", "network", "server"]
    reason: str
    retry_at: float | None = None


Outcome = Literal["merged", "rejected", "reverted", "defect"]


class OutcomeReported(Payload):
    """What became of a finished run's work, reported afterwards (by a person, a forge hook or the
    telemetry): merged; rejected (closed unmerged: its success was false); reverted after merging,
    or a defect traced to it (an escaped defect). The latest report counts."""

    type = EventType.OUTCOME_REPORTED
    outcome: Outcome
    by: str
    reason: str = ""


class RefreshedRun(BaseModel):
    """One delivered run as a refresh found it: the repository's history and its forge's request."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    run_id: str
    outcome: Outcome | None = None  # what the evidence says now (None: nothing yet, e.g. an open request)
    recorded: bool = False  # recorded as the run's outcome by this refresh (it differed from the last)
    reason: str = ""
    forge_state: Literal["open", "merged", "closed"] | None = None
    changes_requested: list[str] = Field(default_factory=list)
    error: str | None = None  # the forge could not be asked (the run's outcome is left as it was)


class OutcomesRefreshed(Payload):
    """One refresh of a repository's outcomes (by `tether report --record-outcomes` or a worker's
    schedule), in the repository's refresh log: every run it looked at and what it found."""

    type = EventType.OUTCOMES_REFRESHED
    repo: str
    by: str
    days: float
    runs: list[RefreshedRun] = Field(default_factory=list)


class TierChanged(Payload):
    """A (repository, configuration) moved one tier, in its gate log: promoted by `tether gate`
    after meeting the next tier's SLA, demoted on breaching its own, or pinned/unpinned by a person.
    `measures` and `breaches` are the evidence the decision was taken on."""

    type = EventType.TIER_CHANGED
    repo: str
    configuration: str
    from_tier: str | None
    to_tier: str
    decision: Literal["promote", "demote", "pin", "unpin"]
    reason: str
    by: str
    pinned: bool = False
    measures: dict[str, Any] = Field(default_factory=dict)
    breaches: list[str] = Field(default_factory=list)


class CanaryStarted(Payload):
    """A canary begins, in its own log: `share` of the queued tasks (of `repo`, or of every
    repository) run with the `candidate` policy, the rest with the current one, until a decision."""

    type = EventType.CANARY_STARTED
    candidate: str = Field(description="the candidate policy's TOML")
    candidate_path: str
    candidate_sha256: str
    share: float = Field(gt=0, lt=1)
    repo: str | None
    alpha: float
    min_tasks: int
    max_tasks: int
    cost_tolerance: float
    by: str


class CanaryDecided(Payload):
    """The canary's decision with its evidence: promote (the candidate takes every task until the
    canary is stopped), rollback (it takes none), exhausted (max_tasks without a decision: the
    current configuration stays), stopped (by a person)."""

    type = EventType.CANARY_DECIDED
    decision: Literal["promote", "rollback", "exhausted", "stopped"]
    reason: str
    by: str
    tasks: int
    evidence: dict[str, Any] = Field(default_factory=dict)


class TokenCreated(Payload):
    """A person's token was made (in the store's access log): who holds it, what it may do, who made it."""

    type = EventType.TOKEN_CREATED
    token_id: str
    name: str
    token_role: Literal["viewer", "approver", "admin"]
    by: str
    expires_at: float | None = None


class TokenRevoked(Payload):
    type = EventType.TOKEN_REVOKED
    token_id: str
    name: str
    by: str


class SwitchSet(Payload):
    """The kill switch on a scope ("all", "repo:<name>", "task:<id>"), in the store's fleet log."""

    type = EventType.SWITCH_SET
    scope: str
    reason: str
    by: str


class SwitchReleased(Payload):
    type = EventType.SWITCH_RELEASED
    scope: str
    by: str


class MetricMeasured(Payload):
    """The research metric, run `repeats` times in the judging sandbox on a clean export of `tree`
    (iteration 0: the base, whose spread is the noise a change must beat)."""

    type = EventType.METRIC_MEASURED
    iteration: int = Field(ge=0)
    tree: str
    command: str
    values: list[float]
    median: float
    spread: float = Field(description="max - min of the values")
    duration_s: float = 0.0
    replayed: bool = Field(False, description="taken from the recorded run (a replay does not re-measure)")


class ResearchIteration(Payload):
    """One research proposal judged: kept (a commit on the run's branch) when its required checks
    passed and its median beat the best by more than the noise, else reverted to the best tree."""

    type = EventType.RESEARCH_ITERATION
    iteration: int = Field(ge=1)
    tree: str = Field(description="the proposal's tree")
    median: float | None = Field(description="None: not measured (its checks did not pass, or it was stopped)")
    best_before: float
    noise: float
    kept: bool
    reason: str
    commit: str | None = None


class CandidateScored(Payload):
    """A factory's candidate, at the end of its try: its tree and whether the visible evals (the
    required checks) passed on it."""

    type = EventType.CANDIDATE_SCORED
    candidate: int
    tree: str
    passed: bool
    reason: str


class JudgeInputs(Payload):
    """The calls the judge's model wrote from the spec (inputs, not expected outputs), and the
    command each is run with on every passing candidate."""

    type = EventType.JUDGE_INPUTS
    inputs: list[str]
    probe: str


class CandidateBehaviour(Payload):
    """What one tree (the candidates that made it) did on each judge input, in order: repr() of the
    value, "raised <type>", "exit <code>: <output>" or "timed out"."""

    type = EventType.CANDIDATE_BEHAVIOUR
    candidate: int  # the first of `candidates`
    tree: str
    candidates: list[int]
    outputs: list[str]
    duration_s: float = 0.0
    replayed: bool = False


class JudgeDecided(Payload):
    """The factory's pick: the groups of passing candidates that behaved identically, largest first;
    `method` says how it was made ("only": one passing tree; "agreement": the largest group;
    "tie": groups of the same size, the first by candidate order; "person": a person approved the
    pick of candidates that all disagree)."""

    type = EventType.JUDGE_DECIDED
    chosen: int | None
    tree: str | None
    method: Literal["only", "agreement", "tie", "person", "none"]
    groups: list[list[int]] = Field(default_factory=list)
    reason: str = ""


class Reflecting(Payload):
    """The run's work is over ([memory] reflect): the agent is asked for one note for later runs.
    What follows until run_finished is not the task's work."""

    type = EventType.REFLECTING
    ended: str = Field(description="how the run ends: succeeded or stopped")
    reason: str


class MemoryWritten(Payload):
    """An agent's `remember` call, allowed by the guard, kept as a memory entry of the repository."""

    type = EventType.MEMORY_WRITTEN
    entry_id: str
    text: str
    call_id: str
    state: Literal["active", "pending"] = Field(description="pending: given to runs once a person approves it")


class MemoryReviewed(Payload):
    """A person's decision on a memory entry (in the store's memory log)."""

    type = EventType.MEMORY_REVIEWED
    entry_id: str
    repo: str
    action: Literal["approve", "pin", "unpin", "forget"]
    by: str
    reason: str = ""


class RunPaused(Payload):
    type = EventType.RUN_PAUSED
    reason: str
    rule: str
    status: RunStatus = Field(description="awaiting_approval, or stopped/waiting for a run held at a step")
    retry_at: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _approval_when_unsaid(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("status") is None:  # before v1 an approval pause had none
            data = {**data, "status": RunStatus.AWAITING_APPROVAL}
        return data

    @property
    def held(self) -> bool:
        """Held at a step (resume it) rather than waiting on an approval (decide it)."""
        return self.status != RunStatus.AWAITING_APPROVAL


class RunContinued(Payload):
    type = EventType.RUN_CONTINUED
    reason: str
    user: str


class RunResumed(Payload):
    type = EventType.RUN_RESUMED
    user: str
    tree: str | None
    reexecuting: list[str] = Field(default_factory=list)
    after: str | None = None


class RunFinished(Payload):
    type = EventType.RUN_FINISHED
    status: RunStatus
    reason: str
    rule: str = ""
    branch: str | None = None
    commit: str | None = None
    tree: str | None = None
    diffstat: dict[str, int] | None = None
    usage: dict[str, Any] | None = None
    resolved: bool | None = None  # imported runs: the outcome label
    total_cost_usd: float | None = None


class Unknown(Payload):
    """An event type this version does not know (written by a later one): its fields are kept."""

    model_config = ConfigDict(extra="allow", frozen=True)


PAYLOADS: dict[str, type[Payload]] = {model.type: model for model in Payload.__subclasses__()
                                      if model is not Unknown}
LIFECYCLE = (EventType.RUN_PAUSED, EventType.RUN_CONTINUED, EventType.RUN_RESUMED, EventType.RUN_FINISHED)


class UnreadableEvent(TetherError):
    pass


def read_payload(type_: str, payload: dict[str, Any]) -> Payload:
    """A stored payload as its typed model. Fields this version does not know are left out; one
    that a payload lacks takes its default (or, for conventions older logs kept in strings, is
    derived from them). Raises UnreadableEvent naming the type and the field when a required field
    is missing or has the wrong type."""
    model = PAYLOADS.get(type_)
    if model is None:
        return Unknown(**payload)
    known = {name: value for name, value in payload.items() if name in model.model_fields}
    try:
        return model.model_validate(known)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UnreadableEvent(f"{type_} event: {where}: {first['msg']}") from exc


def json_schemas() -> dict[str, Any]:
    """The JSON Schema of every event type's payload, keyed by type."""
    return {str(type_): model.model_json_schema() for type_, model in PAYLOADS.items()}


def schema_document() -> str:
    return json.dumps({"schema_version": SCHEMA_VERSION, "event_types": json_schemas(),
                       "run_statuses": [str(s) for s in RunStatus]}, indent=2)
