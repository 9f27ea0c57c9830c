"""The tether.toml schema. Every section forbids unknown keys so a typo is an error, not a no-op."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tether.policy.patterns import compile_patterns


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentPolicy(Section):
    architecture: Literal["harness", "orchestrated", "research", "factory"] = "harness"
    model: str = Field("scripted:turns.json", min_length=1)
    max_output_tokens: int = Field(4096, gt=0)
    system_prompt: str | None = None
    max_retries: int = Field(4, ge=0)
    retry_base_s: float = Field(1.0, ge=0)
    # Run the required checks after every successful write, not only on submit: a correct file
    # then finishes the run even when the model never thinks to submit (small models often don't).
    check_after_write: bool = False
    # Independent tries, each from the base with a fresh conversation and its own seed, each judged by
    # the required checks; the first that passes is delivered. max_steps is each try's; the run's
    # tokens, money and time are shared by all of them.
    attempts: int = Field(1, ge=1, le=100)
    # How an openai: model answers: native tool calls, or the text action format under its grammar, for
    # small models behind a llama.cpp server (local: models always answer in text).
    actions: Literal["tools", "text"] = "tools"
    # Show the files the task names (the test file of "make the tests in x_test.py pass") with the
    # task, read from the base commit (agents/context.py); Tether's own architectures only.
    show_named_files: bool = True

    @model_validator(mode="after")
    def _attempts_of_one_loop(self) -> AgentPolicy:
        if self.attempts > 1 and self.architecture != "harness":
            raise ValueError(f"attempts = {self.attempts} needs architecture = \"harness\" (an orchestrated "
                             "run's roles work in worktrees of their own)")
        return self


class BudgetPolicy(Section):
    """Budgets are the team's to set: none is set by default (an agent Tether has never seen may
    need 250 steps to succeed). `mode = "shadow"` records what a budget would have stopped and
    lets the run go on (the fleet's daily limits and the kill switch are never shadowed)."""
    max_usd: float | None = Field(None, gt=0)
    max_tokens: int | None = Field(None, gt=0)
    max_wall_s: float | None = Field(None, gt=0)
    max_steps: int | None = Field(None, gt=0)
    max_tool_calls: int | None = Field(None, gt=0)
    mode: Literal["enforce", "shadow"] = "enforce"


class WritesPolicy(Section):
    max_files: int | None = Field(None, gt=0)
    max_lines: int | None = Field(None, gt=0)
    # A whole-file write that would remove more than this share of an existing file's lines (of a
    # file of 10 lines or more) is refused: a model that echoes a template must not wipe a module.
    max_removed_share: float | None = Field(0.5, gt=0, le=1)
    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)
    ignore: list[str] = Field(default_factory=list)
    # Deleting a tracked file, whatever did it (rm, a script, a patch), judged from the tree after
    # every step: "allow", "ask" (its owners, else the admins, approve) or "deny" (rolled back).
    # Unset: "deny" when a [commands] deny rule names rm, else "allow".
    delete: Literal["allow", "ask", "deny"] | None = None

    @field_validator("allow", "deny", "ignore")
    @classmethod
    def _valid_patterns(cls, patterns: list[str]) -> list[str]:
        compile_patterns(patterns)
        return patterns


class CommandsPolicy(Section):
    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)
    network: bool = False
    timeout_s: float = Field(120, gt=0)

    @field_validator("allow", "deny")
    @classmethod
    def _valid_rules(cls, rules: list[str]) -> list[str]:
        for rule in rules:
            if rule.startswith("re:"):
                try:
                    re.compile(rule[3:])
                except re.error as exc:
                    raise ValueError(f"invalid regex in rule {rule!r}: {exc}") from exc
            elif not rule.strip():
                raise ValueError("empty command rule")
        return rules


class SandboxPolicy(Section):
    mode: Literal["bwrap", "none"] = "bwrap"
    memory_mb: int = Field(4096, gt=0)
    cpu_s: int = Field(600, gt=0)
    max_procs: int = Field(512, gt=0)
    max_file_mb: int = Field(100, gt=0)
    tmp_mb: int = Field(1024, gt=0)  # the private /tmp (a tmpfs: memory)
    max_step_write_mb: int = Field(100, gt=0)  # bytes one step may add to the worktree, all files together
    ro_paths: list[str] = Field(default_factory=list)
    pass_env: list[str] = Field(default_factory=list)  # variables passed to commands (never secret-looking ones)

    @field_validator("pass_env")
    @classmethod
    def _valid_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return names


class EnvironmentPolicy(Section):
    """The project's own toolchain for its checks and the agent's commands (never Tether's)."""
    setup: list[str] | None = None  # commands run once per digest in the sandbox; None: detected
    network: bool = True  # whether setup may reach the network (the agent's commands never do, unless allowed)
    path: list[str] = Field(default_factory=list)  # folders of the environment put first on PATH
    mounts: dict[str, str] = Field(default_factory=dict)  # worktree path -> folder of the environment
    inputs: list[str] = Field(default_factory=list)  # files whose content keys the cache (default: manifests)
    timeout_s: float = Field(900, gt=0)  # per setup command

    @field_validator("setup")
    @classmethod
    def _commands(cls, setup: list[str] | None) -> list[str] | None:
        if setup is not None and not all(command.strip() for command in setup):
            raise ValueError("a setup command is empty")
        return setup


class OwnershipPolicy(Section):
    codeowners: bool = True
    protected: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("protected")
    @classmethod
    def _valid_protected(cls, protected: dict[str, list[str]]) -> dict[str, list[str]]:
        compile_patterns(list(protected))
        for pattern, owners in protected.items():
            if not owners:
                raise ValueError(f"protected path {pattern!r} names no owners")
        return protected


class ApprovalsPolicy(Section):
    timeout_s: float | None = Field(None, gt=0)  # None: a request waits until someone decides
    on_timeout: Literal["deny", "escalate"] = "deny"
    escalate_to: list[str] = Field(default_factory=list)
    admins: list[str] = Field(default_factory=list)  # may approve any protected path
    teams: dict[str, list[str]] = Field(default_factory=dict)  # "@legal" = ["alice", "bob"]
    # With nobody to ask (no terminal, a queue worker, an eval): "pause" waits for a decision; "deny"
    # records the request (an interrupt) and denies it at once, and the agent goes on.
    unattended: Literal["pause", "deny"] = "pause"

    @model_validator(mode="after")
    def _escalation_has_owners(self) -> ApprovalsPolicy:
        if self.on_timeout == "escalate" and not self.escalate_to:
            raise ValueError("on_timeout = \"escalate\" needs escalate_to owners")
        if self.on_timeout == "escalate" and self.timeout_s is None:
            raise ValueError("on_timeout = \"escalate\" needs timeout_s")
        return self


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


DeliveryMode = Literal["branch", "push", "pull_request"]
DELIVERY_ORDER: tuple[DeliveryMode, ...] = ("branch", "push", "pull_request")


class DeliveryPolicy(Section):
    """How a finished run's work leaves the machine. "branch": a local branch (always made);
    "push": the branch pushed to `remote`; "pull_request": pushed, and one pull/merge request
    opened or updated on the forge with the run's evidence. Only `tether/<run id>` is pushed,
    never with force. The token is read from the environment variable `token_env` when delivering,
    never stored, logged or given to a sandbox."""
    mode: DeliveryMode = "branch"
    remote: str = Field("origin", min_length=1)  # a remote's name in the repository, or a URL
    forge: Literal["github", "gitlab", "gitea"] | None = None  # None: known from the remote's host
    api_url: str | None = None  # None: the forge's public API for github.com and gitlab.com
    repository: str | None = None  # "owner/name" (GitLab: "group/sub/name"); None: from the remote URL
    token_env: str | None = None  # None: GITHUB_TOKEN, GITLAB_TOKEN or GITEA_TOKEN
    base: str | None = None  # the branch the request targets; None: the branch the run started from
    labels: list[str] = Field(default_factory=lambda: ["tether"])
    draft: bool = False  # a run that did not succeed is always delivered as a draft
    reviewers: bool = True  # ask the CODEOWNERS of the touched files (never the requester)

    @field_validator("token_env")
    @classmethod
    def _env_name(cls, name: str | None) -> str | None:
        if name is not None and not _ENV_NAME.fullmatch(name):
            raise ValueError(f"token_env must name an environment variable, got {name!r}")
        return name

    @field_validator("repository")
    @classmethod
    def _owner_and_name(cls, repository: str | None) -> str | None:
        if repository is not None and (repository.count("/") < 1 or "" in repository.split("/")):
            raise ValueError(f"repository must be \"owner/name\", got {repository!r}")
        return repository

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("https://", "http://")):
            raise ValueError(f"api_url must be an http(s) URL, got {url!r}")
        return url


class CheckPolicy(Section):
    name: str = Field(min_length=1)
    command: str = Field(min_length=1)
    timeout_s: float = Field(300, gt=0)
    required: bool = True


# The brakes' detector names (a `brake` event's `detector`), and the budgets' rules.
DETECTORS = frozenset({"repeat", "consecutive_failures", "no_progress", "exploring_after_edit", "churn",
                       "stale_failing", "error_repeat", "seen_outputs", "repeat_output", "stale_tests", "no_action",
                       "burn_rate", "score"})
BUDGET_RULES = ("budget.max_usd", "budget.max_tokens", "budget.max_wall_s", "budget.max_steps",
                "budget.max_tool_calls")

# What the stop score reads of a run (Brakes.features computes them).
SCORE_FEATURES = ("steps", "usd", "consecutive_failures", "steps_without_change", "steps_after_edit_without_change",
                  "repeats", "seen_output_share", "stale_test_cycles", "stale_failing_cycles", "error_repeats",
                  "churn", "burn_ratio")


class StopScore(Section):
    """A stop score fitted by `tether backtest --fit`: stop when the logistic model's probability
    that the run fails reaches `threshold`, after `min_steps` steps."""
    bias: float = 0.0
    weights: dict[str, float] = Field(default_factory=dict)
    threshold: float = Field(0.9, gt=0, lt=1)
    min_steps: int = Field(5, ge=0)

    @model_validator(mode="after")
    def _known_features(self) -> StopScore:
        unknown = sorted(set(self.weights) - set(SCORE_FEATURES))
        if unknown:
            raise ValueError(f"unknown feature(s) {', '.join(unknown)}; the score reads {', '.join(SCORE_FEATURES)}")
        return self


class BrakesPolicy(Section):
    # Defaults that stop only a loop nothing comes out of, safe for agents Tether has never seen: on
    # every shared trajectory set (862 real runs of two agents, docs/backtest) they stop no run that
    # went on to succeed. Detectors that save money are calibrated on each agent's own runs
    # (`tether brakes calibrate`); the old defaults stopped 2-4% of the shared sets' successes and
    # 18% of a third agent's, which needs 100-250 steps.
    repeat_max: int | None = Field(None, gt=0)  # the same action, within repeat_window
    repeat_window: int = Field(20, gt=0)
    max_consecutive_failures: int | None = Field(20, gt=0)
    max_steps_without_change: int | None = Field(None, gt=0)
    max_turns_without_action: int | None = Field(20, gt=0)  # replies with no tool call (or no readable action)
    repeat_output_max: int | None = Field(8, gt=0)  # same command, same output, within repeat_window
    # Detectors that look at outputs and progress (off unless set; see `tether backtest`):
    stale_test_cycles: int | None = Field(None, gt=0)  # edit-then-test cycles leaving the test output unchanged
    burn_rate_factor: float | None = Field(None, gt=1)  # recent cost per step vs the run's own median
    burn_rate_window: int = Field(5, gt=0)
    burn_rate_min_steps: int = Field(10, gt=0)
    stale_failing_cycles: int | None = Field(None, gt=0)  # edit-then-test cycles not lowering the failing count
    error_repeat_max: int | None = Field(None, gt=0)  # the same error (normalised) returning this many times
    max_steps_after_edit_without_change: int | None = Field(None, gt=0)  # exploring again once editing began
    seen_output_share: float | None = Field(None, gt=0, le=1)  # share of steps whose output was seen before
    seen_output_min_steps: int = Field(10, gt=0)
    churn_max: int | None = Field(None, gt=0)  # the worktree returning to an earlier state, or edits reverted
    score: StopScore | None = None  # a fitted combination of all of the above (tether backtest --fit)
    # "shadow": a brake that would fire records `brake_shadowed` and the run goes on (every brake);
    # `shadow` names the brakes (and budgets: "budget.max_steps") to shadow one by one.
    mode: Literal["enforce", "shadow"] = "enforce"
    shadow: list[str] = Field(default_factory=list)

    @field_validator("shadow")
    @classmethod
    def _known_brakes(cls, names: list[str]) -> list[str]:
        unknown = [name for name in names if name.removeprefix("brakes.") not in DETECTORS
                   and name not in BUDGET_RULES]
        if unknown:
            raise ValueError(f"unknown brake(s) {', '.join(unknown)}; the brakes are {', '.join(sorted(DETECTORS))} "
                             f"and the budgets {', '.join(BUDGET_RULES)}")
        return names

    def shadows(self, rule: str) -> bool:
        """Whether the brake or budget `rule` ("repeat", "brakes.repeat", "budget.max_steps") only records."""
        name = rule.removeprefix("brakes.")
        return (self.mode == "shadow" and not rule.startswith("budget.")) or name in self.shadow or rule in self.shadow

    @model_validator(mode="after")
    def _window_holds_repeats(self) -> BrakesPolicy:
        if self.repeat_max is not None and self.repeat_window < self.repeat_max:
            raise ValueError(
                f"repeat_window ({self.repeat_window}) must be at least repeat_max "
                f"({self.repeat_max})"
            )
        return self


class FleetPolicy(Section):
    """Org-wide limits shared by every worker; read only from the org policy (tether fleet set)."""
    max_usd_per_day: float | None = Field(None, gt=0)  # all runs of the store, per UTC day
    max_lines_per_day_per_repo: int | None = Field(None, gt=0)  # changed lines humans must review
    max_concurrent_per_repo: int | None = Field(None, gt=0)
    on_limit: Literal["wait", "refuse"] = "wait"  # wait for the next UTC day, or stop the run
    # Reserved for a step whose price is not known before the call (then settled to the real cost).
    step_usd_estimate: float = Field(0.05, ge=0)


class ResearchPolicy(Section):
    """`architecture = "research"`: improve a metric, one kept or reverted change at a time."""
    metric: str | None = None  # a command that prints the number (the last number it prints)
    direction: Literal["lower", "higher"] = "lower"
    repeats: int = Field(3, ge=1, le=50)  # runs per measurement; their median is the value
    iterations: int = Field(5, ge=1, le=200)  # proposals, each with [budget] max_steps of its own
    # The base's spread (max - min) over |median| beyond which the metric is too noisy to judge by.
    max_noise: float = Field(0.5, gt=0)
    timeout_s: float = Field(300, gt=0)  # per run of the metric


class FactoryPolicy(Section):
    """`architecture = "factory"`: a spec in, k candidates, a judge they cannot see or write.
    Candidates are independent tries (each with [budget] max_steps), scored by the required checks
    (the visible evals). Among those that pass, the model writes `judge_inputs` calls from the spec;
    every passing candidate is run on them in the judging sandbox (`probe`), and the largest group
    of identical behaviour wins."""
    spec: str | None = None  # a markdown file in the repository (read at the base commit); None: the task
    approve_spec: bool = True  # a person approves the spec (its content hash) before the first model call
    spec_owners: list[str] = Field(default_factory=list)  # who may approve it; none: the spec file's owners
    candidates: int = Field(4, ge=2, le=32)
    judge_inputs: int = Field(8, ge=1, le=64)
    # The command that runs one input on a candidate, `{input}` replaced by the input, shell-quoted.
    # None: Python. The input is an expression; the modules the candidate changed are imported first,
    # and what prints is repr() of its value, or the exception's type.
    probe: str | None = None
    probe_timeout_s: float = Field(10, gt=0)
    # Every passing candidate behaves differently: "person" asks for an approval of the pick (the
    # first of them); "deliver" delivers it; "stop" stops the run undelivered.
    on_disagreement: Literal["person", "deliver", "stop"] = "person"


class OrchestratedPolicy(Section):
    """The orchestrated architecture's roles: a planner, executors in their own worktrees, a reviewer."""
    executors: int = Field(2, gt=0, le=8)
    max_subtasks: int = Field(4, gt=0, le=16)
    executor_max_steps: int = Field(15, gt=0)  # then the executor hands over what it has
    on_conflict: Literal["resolve", "reject"] = "resolve"  # leave markers for the reviewer, or drop the branch
    planner_prompt: str | None = None
    executor_prompt: str | None = None
    reviewer_prompt: str | None = None


class Sla(Section):
    """What a (repository, configuration) must show, over the last `window_days`, to enter or keep
    a tier (see gate/). A limit left unset is not judged."""
    window_days: float = Field(30, gt=0)
    min_runs: int = Field(20, gt=0)  # fewer finished runs in the window: not enough evidence to judge
    min_fix_rate: float | None = Field(None, ge=0, le=1)  # the lower bound of the 95% Wilson interval
    max_p95_latency_s: float | None = Field(None, gt=0)
    max_escaped_defect_rate: float | None = Field(None, ge=0, le=1)  # reverted or defect, of claimed fixes
    max_false_success_rate: float | None = Field(None, ge=0, le=1)  # rejected or failing hidden tests, of claimed
    max_usd_per_fix: float | None = Field(None, gt=0)
    max_interrupts_per_run: float | None = Field(None, ge=0)


class TierPolicy(Section):
    """One rung of the org's permission ladder: the most a run at this tier may do, on top of the
    policy (a tier only ever narrows it), and the SLA to enter it and to keep it."""
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    delivery: DeliveryMode = "branch"  # the furthest a run's work may go
    draft: bool = False  # pull requests opened as drafts
    max_files: int | None = Field(None, gt=0)
    max_lines: int | None = Field(None, gt=0)
    network: bool = False  # whether commands may reach the network (if the policy allows it too)
    commands_deny: list[str] = Field(default_factory=list)  # added to [commands] deny
    architectures: list[str] | None = None  # e.g. ["harness", "agent:claude-code"]; None: any
    enter: Sla | None = None  # every tier but the first needs one
    keep: Sla | None = None  # None: the enter SLA

    @field_validator("commands_deny")
    @classmethod
    def _valid_rules(cls, rules: list[str]) -> list[str]:
        return CommandsPolicy._valid_rules(rules)

    @property
    def keep_sla(self) -> Sla | None:
        return self.keep or self.enter


def _refuse_duplicates(what: str, names: list[str]) -> None:
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"duplicate {what} names: {', '.join(duplicates)}")


class MemoryPolicy(Section):
    """What agents learn about a repository, kept across its runs: written through the guard with
    the `remember` tool, reviewed by people (tether memory), given to later runs at their start."""

    enabled: bool = False
    max_entries: int = Field(50, gt=0)  # live (active or pending) entries per repository
    max_per_run: int = Field(5, gt=0)
    max_entry_chars: int = Field(500, gt=0, le=4000)
    budget_tokens: int = Field(600, ge=0)  # what a run is given at its start, pinned and most-used first
    require_approval: bool = False  # an entry is given to runs only once a person approved it
    reflect: bool = False  # Tether's harness asks the agent for one note when the run ends


class Policy(Section):
    agent: AgentPolicy = Field(default_factory=AgentPolicy)
    budget: BudgetPolicy = Field(default_factory=BudgetPolicy)
    writes: WritesPolicy = Field(default_factory=WritesPolicy)
    commands: CommandsPolicy = Field(default_factory=CommandsPolicy)
    sandbox: SandboxPolicy = Field(default_factory=SandboxPolicy)
    environment: EnvironmentPolicy = Field(default_factory=EnvironmentPolicy)
    ownership: OwnershipPolicy = Field(default_factory=OwnershipPolicy)
    approvals: ApprovalsPolicy = Field(default_factory=ApprovalsPolicy)
    checks: list[CheckPolicy] = Field(default_factory=list)
    brakes: BrakesPolicy = Field(default_factory=BrakesPolicy)
    fleet: FleetPolicy = Field(default_factory=FleetPolicy)
    orchestrated: OrchestratedPolicy = Field(default_factory=OrchestratedPolicy)
    research: ResearchPolicy = Field(default_factory=ResearchPolicy)
    factory: FactoryPolicy = Field(default_factory=FactoryPolicy)
    delivery: DeliveryPolicy = Field(default_factory=DeliveryPolicy)
    memory: MemoryPolicy = Field(default_factory=MemoryPolicy)
    tiers: list[TierPolicy] = Field(default_factory=list)  # lowest first; org policy only

    @field_validator("tiers")
    @classmethod
    def _ladder(cls, tiers: list[TierPolicy]) -> list[TierPolicy]:
        _refuse_duplicates("tier", [tier.name for tier in tiers])
        missing = [tier.name for tier in tiers[1:] if tier.enter is None]
        if missing:
            raise ValueError(f"tier(s) {', '.join(missing)} need an [tiers.enter] SLA (only the first tier has none)")
        return tiers

    @field_validator("checks")
    @classmethod
    def _unique_check_names(cls, checks: list[CheckPolicy]) -> list[CheckPolicy]:
        _refuse_duplicates("check", [check.name for check in checks])
        return checks

    @model_validator(mode="after")
    def _attempts_end(self) -> Policy:
        if self.agent.attempts > 1 and self.budget.max_steps is None:
            raise ValueError(f"[agent] attempts = {self.agent.attempts} needs [budget] max_steps: each try ends at "
                             "its step budget")
        if self.agent.architecture == "research":
            if not self.research.metric:
                raise ValueError('architecture = "research" needs [research] metric: a command that prints a number')
            if self.budget.max_steps is None:
                raise ValueError('architecture = "research" needs [budget] max_steps: each proposal ends at its step '
                                 "budget")
        if self.agent.architecture == "factory":
            if not any(check.required for check in self.checks):
                raise ValueError('architecture = "factory" needs a required [[checks]]: the evals a candidate must '
                                 "pass")
            if self.budget.max_steps is None:
                raise ValueError('architecture = "factory" needs [budget] max_steps: each candidate ends at its step '
                                 "budget")
        return self

    def shadowed(self, rule: str) -> bool:
        """Whether the budget or brake `rule` (budget.max_steps, brakes.repeat) only records what it
        would have stopped (`brake_shadowed`) and lets the run go on."""
        if rule.startswith("budget."):
            return self.budget.mode == "shadow" or rule in self.brakes.shadow
        return self.brakes.shadows(rule)
