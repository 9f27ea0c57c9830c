"""`tether recommend`: the one question that tells the architectures apart, and a starter policy.

Who judges the result decides the architecture: a person reviewing (harness, or orchestrated when
the work needs several roles at volume), an eval suite (factory: candidates against the evals), or
a metric (research: propose, measure, keep or revert). At most three follow-ups set the policy:
several roles (asked only when a person judges), what one task may cost, and whether the agent may
touch protected paths. Each reason quotes what Tether measured, with where it was measured.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, get_args

from tether.audit import test_command
from tether.errors import TetherError
from tether.workspace.git import head_commit, repo_root

Judge = Literal["person", "evals", "metric"]
JUDGES: tuple[str, ...] = get_args(Judge)

JUDGED_BY = {"person": "a person reviews the result", "evals": "an eval suite judges the result",
             "metric": "a metric judges the result"}
QUESTION = "Who judges the result: a person reviewing it, an eval suite, or a metric?"
FOLLOW_UPS = {
    "roles": "Does the work need several roles (plan, build, review) at volume?",
    "max_usd": "What may one task cost, in USD?",
    "protected": "May the agent touch protected paths (CI, the policy, infrastructure), with a person's approval?",
}
ORCHESTRATION_MIN_USD = 1.0  # below it, orchestration's 1.7x tokens leave the harness more tries
DEFAULT_USD = 2.0
CANDIDATES = 4  # the factory's candidates in the starter policy

# What Tether measured, quoted with where (the docs folder holds the data and the report).
ORCHESTRATION_COST = ("on 24 single-file Exercism tasks with the local 1.5B, orchestration cost 1.7x the tokens "
                      "(12,196 against 7,118 a task) and 2.2x the median latency of the guarded harness, and solved "
                      "6/24 against 9/24 (docs/eval-exercism-local)")
HARNESS_COST = ("the harness is the cheapest loop a review can judge: 3,609 to 7,118 tokens a task, p50 26 to 63 s, "
                "on the same 24 tasks (docs/eval-exercism-local)")
VISIBLE_JUDGE = ("a loop that stops at the first passing visible check delivers false successes: 12 of the 16 runs "
                 "`attempts` ended as succeeded, and 11 of the unguarded harness's 18, failed the hidden tests "
                 "(docs/local-agent-vs-plain, docs/eval-exercism-local); keep evals the agent cannot see or write")
ATTEMPTS_GAIN = ("independent candidates solved 4/40 against the plain prompt's 2/40 and the guarded harness's 2/40 "
                 "(docs/local-agent-vs-plain)")


@dataclass(frozen=True)
class Answers:
    judge: str
    roles: bool = False
    max_usd: float | None = None
    protected: bool = False

    def __post_init__(self) -> None:
        if self.judge not in JUDGES:
            raise RecommendError(f"the judge {self.judge!r} is not one of {', '.join(JUDGES)}")
        if self.max_usd is not None and not (math.isfinite(self.max_usd) and self.max_usd > 0):
            raise RecommendError(f"what one task may cost must be a positive number of USD, not {self.max_usd}")


class RecommendError(TetherError):
    exit_code = 2


@dataclass
class Recommendation:
    architecture: str  # harness | orchestrated | factory | research
    runs_as: str  # the policy's architecture that the starter policy runs
    why: list[str]
    policy: str  # a starter tether.toml
    answers: Answers
    asked: list[str] = field(default_factory=list)  # the follow-ups that mattered

    def as_dict(self) -> dict[str, object]:
        return {"architecture": self.architecture, "runs_as": self.runs_as, "why": self.why,
                "answers": asdict(self.answers), "asked": self.asked, "policy": self.policy}


def follow_ups(judge: str) -> list[str]:
    """The follow-ups worth asking after the judge's answer (several roles only matter to a person's review)."""
    return ["roles", "max_usd", "protected"] if judge == "person" else ["max_usd", "protected"]


def recommend(answers: Answers, check_command: str = "python -m pytest -q") -> Recommendation:
    """The architecture for the answers, why, and a starter policy with `check_command` required."""
    usd = answers.max_usd or DEFAULT_USD
    asked = follow_ups(answers.judge)
    if answers.judge == "person":
        if answers.roles and usd >= ORCHESTRATION_MIN_USD:
            why = ["several roles at volume: a planner, executors in worktrees of their own, a reviewer who "
                   "merges, all under one guard", f"it costs more on small tasks: {ORCHESTRATION_COST}; use it for "
                   "work that splits into parts"]
            return _done("orchestrated", "orchestrated", why, answers, asked, check_command, usd)
        why = ["a person reviews the branch and its evidence: one agent, one loop", HARNESS_COST]
        if answers.roles:
            why.append(f"several roles were asked for, but at ${usd:g} a task the harness gets more tries: "
                       f"{ORCHESTRATION_COST}")
        return _done("harness", "harness", why, answers, asked, check_command, usd)
    if answers.judge == "evals":
        why = ["an eval suite judges: spend the budget on candidates against the evals, a person only at the "
               "edges (the spec, approved once per content; the delivery)", VISIBLE_JUDGE, ATTEMPTS_GAIN,
               f"the starter policy runs {CANDIDATES} candidates scored by the required checks; among those that "
               "pass, the judge picks by agreement on inputs the model writes from the spec, which no candidate "
               "sees; protect the evals' files so a candidate cannot edit its judge"]
        return _done("factory", "factory", why, answers, asked, check_command, usd)
    why = ["a metric judges: propose a change, measure it against the noise measured on the base, keep it (a "
           "commit) or revert it, until the iterations or the budget end",
           "set [research] metric to the command that prints the number (the starter names `python bench.py`); "
           "protect the metric's and the tests' files so a proposal cannot edit its judge"]
    return _done("research", "research", why, answers, asked, check_command, usd)


def _done(architecture: str, runs_as: str, why: list[str], answers: Answers, asked: list[str],
          check_command: str, usd: float) -> Recommendation:
    return Recommendation(architecture, runs_as, why, starter_policy(architecture, runs_as, answers, check_command,
                                                                      usd), answers, asked)


def starter_policy(architecture: str, runs_as: str, answers: Answers, check_command: str, usd: float) -> str:
    """A tether.toml for the answers: budgets from what a task may cost, caps, the check, brakes."""
    lines = [f"# tether.toml from `tether recommend`: {architecture} ({JUDGED_BY[answers.judge]}).",
             "# Every key is optional; unknown keys are errors. Reference: docs/policy.md.", "",
             "[agent]", f'architecture = "{runs_as}"', 'model = "openai:gpt-4o-mini"  # or local:qwen2.5-coder-1.5b']
    steps = 30 if architecture in ("factory", "research") else 300
    if architecture in ("factory", "research"):
        lines.append("check_after_write = true        # a write that passes the checks ends the try")
    wall = 1800 if architecture == "harness" else 3600
    lines += ["", "[budget]                        # per run; a call that would exceed one is not made",
              f"max_usd = {usd:.2f}", f"max_wall_s = {wall}",
              f"max_steps = {steps}" + {"factory": "                 # each candidate's",
                                        "research": "                 # each proposal's"}.get(architecture, ""),
              "", "[writes]                        # measured from the worktree's diff after every step",
              f"max_files = {10 if architecture == 'research' else 20}",
              f"max_lines = {200 if architecture == 'research' else 600}"]
    denied = ['"*.lock"', '".env*"'] + ([] if answers.protected else ['"tether.toml"', '".github/"'])
    lines += [f"deny = [{', '.join(denied)}]", "",
              "[commands]", 'deny = ["git push", "git remote", "sudo", "re:\\\\bcurl\\\\b|\\\\bwget\\\\b"]',
              "network = false"]
    if architecture == "orchestrated":
        lines += ["", "[orchestrated]", "executors = 2", "max_subtasks = 4"]
    if answers.protected:
        lines += ["", "[ownership.protected]            # a write here pauses the run for these owners",
                  '"tether.toml" = ["@platform"]', '".github/" = ["@platform"]', "",
                  "[approvals]", 'unattended = "pause"            # nobody to ask: wait (or "deny")']
    lines += ["", "[[checks]]                      # the run succeeds only when every required check passes",
              'name = "tests"', f"command = {_toml_string(check_command)}", "timeout_s = 600", "required = true"]
    if architecture == "factory":
        lines += ["", "[factory]                       # candidates, and a judge they cannot see or write",
                  f"candidates = {CANDIDATES}", "judge_inputs = 8", "approve_spec = true             # a person "
                  "approves the spec (once per content) before the first model call",
                  'on_disagreement = "person"      # every passing candidate behaves differently: ask']
        if answers.protected:
            lines.append('spec_owners = ["@platform"]')
    if architecture == "research":
        lines += ["", "[research]                      # the metric: a command that prints the number",
                  'metric = "python bench.py"      # yours', 'direction = "lower"', "repeats = 3",
                  "iterations = 5"]
    lines += ["", "[brakes]                        # the defaults stop only loops nothing comes out of",
              "repeat_output_max = 8", "max_consecutive_failures = 20", "max_turns_without_action = 20", ""]
    return "\n".join(lines)


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_policy(recommendation: Recommendation, target: Path, force: bool = False) -> None:
    """Write the starter policy; an existing file is kept unless `force`."""
    if target.exists() and not force:
        raise RecommendError(f"{target} exists; pass --force to overwrite it, or print the policy with --json")
    target.write_text(recommendation.policy)


def check_command_for(repo: Path) -> str:
    """The usual test command of the repository's layout (its HEAD), or pytest's when it has none."""
    try:
        root = repo_root(repo.resolve())
        return test_command(root, head_commit(root)) or "python -m pytest -q"
    except TetherError:  # not a repository, or one without a commit: the usual command
        return "python -m pytest -q"
