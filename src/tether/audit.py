"""`tether audit`: is a repository ready for agents? Before any agent touches it: its tests exist and
pass in the sandbox, in the project's environment, twice (a flaky test shows); CI is configured;
CODEOWNERS parses and covers what the policy protects; the policy bounds a run (budgets, write caps,
required checks); no secret sits in its files or its recent history (detect-secrets); no large binary;
its README or CONTRIBUTING says how to run the tests. A score, and for each gap the fix."""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import codeowners as codeowners_lib

from tether.doctor import diagnose
from tether.policy.ownership import CODEOWNERS_LOCATIONS
from tether.policy.patterns import compile_patterns
from tether.policy.schema import CheckPolicy, Policy
from tether.workspace.git import git, git_env, head_commit, repo_root, show_file
from tether.workspace.project import CommitFiles, detect

CI_FILES = (".github/workflows/", ".gitlab-ci.yml", ".circleci/config.yml", "Jenkinsfile", "azure-pipelines.yml",
            ".travis.yml", "bitbucket-pipelines.yml", ".buildkite/", ".woodpecker.yml", ".drone.yml")
LARGE_BYTES = 5 << 20
TEST_WORDS = re.compile(r"\b(pytest|py\.test|tox|nox|unittest|npm (run )?test|pnpm (run )?test|yarn test|"
                        r"make (test|check)|cargo test|go test|mvn test|gradle test|just test)\b")
SECRET_SCAN_LIMIT = 1 << 20


@dataclass
class Gap:
    what: str
    ok: bool
    detail: str
    fix: str = ""  # a command or a tether.toml snippet
    weight: int = 1


@dataclass
class Audit:
    repo: str
    commit: str
    findings: list[Gap] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def score(self) -> int:
        total = sum(g.weight for g in self.findings)
        return round(100 * sum(g.weight for g in self.findings if g.ok) / total) if total else 0

    def as_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "commit": self.commit, "score": self.score, "seconds": self.seconds,
                "findings": [asdict(g) for g in self.findings]}


def test_command(repo: Path, commit: str) -> str | None:
    """The usual test command for the layout, when the policy names none."""
    plan = detect(CommitFiles(repo, commit))
    if plan.kind == "python":
        return "python -m pytest -q -p no:cacheprovider"
    if plan.kind == "node":
        return "npm test"
    return None


def audit(repo: Path, policy: Policy, policy_found: bool, history: int = 50,
          say: Callable[[Gap], None] = lambda _g: None) -> Audit:
    repo = repo_root(repo.resolve())
    result = Audit(str(repo), head_commit(repo))

    def found(gap: Gap) -> None:
        result.findings.append(gap)
        say(gap)

    files = [name for name in git(repo, "ls-files", "-z").split("\0") if name]
    _tests(repo, result, policy, found)
    ci = [name for name in CI_FILES if any(f == name or f.startswith(name) for f in files)]
    found(Gap("CI", bool(ci), f"configured: {', '.join(ci)}" if ci else "no CI configuration found (GitHub Actions, "
              "GitLab CI, CircleCI, Jenkins, ...)", "" if ci else "add the project's tests to a CI workflow "
              "(e.g. .github/workflows/tests.yml) so a person's review starts from a green run"))
    _owners(repo, result.commit, policy, files, found)
    _policy(policy, policy_found, found)
    started = time.perf_counter()
    _secrets(repo, files, history, found)
    result.seconds["secrets"] = round(time.perf_counter() - started, 2)
    _binaries(repo, found)
    _docs(repo, result.commit, files, found)
    return result


def _tests(repo: Path, result: Audit, policy: Policy, found: Callable[[Gap], None]) -> None:
    checks = policy.checks
    if not checks:
        command = test_command(repo, result.commit)
        if command is None:
            found(Gap("tests", False, "no test command: the policy names no [[checks]] and the layout suggests none",
                      '[[checks]]\nname = "tests"\ncommand = "..."  # how this repository runs its tests', weight=4))
            return
        checks = [CheckPolicy(name="tests", command=command, timeout_s=900)]
    probe = policy.model_copy(update={"checks": checks})
    verdicts: list[list[bool]] = []
    failures: list[str] = []
    for attempt in (1, 2):  # twice: a check that changes its mind is flaky
        started = time.perf_counter()
        diagnosis = diagnose(repo, probe)
        result.seconds[f"tests run {attempt}"] = round(time.perf_counter() - started, 2)
        if not diagnosis.setup_works:
            broken = next(f for f in diagnosis.findings if not f.ok)
            found(Gap(broken.what, False, ends_of(" ".join(broken.detail.split()), 400),
                      "declare the environment's setup in tether.toml ([environment] setup = [...])", weight=4))
            return
        ran = [f for f in diagnosis.findings if f.what.startswith("check ")]
        verdicts.append([f.ok for f in ran])
        failures = [why_failed(f.detail) for f in ran if not f.ok]
    found(verdict_of_runs(", ".join(check.name for check in checks), verdicts, result.seconds["tests run 2"],
                          "; ".join(failures)))


def ends_of(text: str, limit: int) -> str:
    """The text within `limit` characters: its start (what failed) and its end (why), not its middle."""
    if len(text) <= limit:
        return text
    return f"{text[:limit // 3]} … {text[-(limit - limit // 3 - 3):]}"


def why_failed(output: str) -> str:
    """The lines of a failing check's output that say why: the test runner's failures, or its last
    line when it names none."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    named = [line for line in lines if line.startswith(("FAILED ", "ERROR ", "FAIL ", "✕"))]
    return " ".join(named[:3] or lines[-1:])[:300]


def verdict_of_runs(names: str, verdicts: list[list[bool]], seconds: float, why: str = "") -> Gap:
    """The tests' finding from two runs of the checks on the same commit (`why`: what the failing
    ones printed)."""
    if verdicts[0] != verdicts[1]:
        return Gap("tests", False, f"{names}: flaky (passed and failed on the same commit)",
                   "fix or quarantine the flaky tests before an agent's run is judged by them", weight=4)
    if all(verdicts[0]):
        return Gap("tests", True, f"{names} pass in the sandbox, twice, in the project's environment "
                   f"({seconds:.1f}s from its cache)", weight=4)
    return Gap("tests", False, f"{names} fail on the base commit before any agent ran" + (f": {why}" if why else ""),
               "fix them, or name in [[checks]] the tests that pass (tether doctor runs them); a run judged "
               "by a failing check cannot succeed", weight=4)


def _owners(repo: Path, commit: str, policy: Policy, files: list[str], found: Callable[[Gap], None]) -> None:
    location = next((name for name in CODEOWNERS_LOCATIONS if show_file(repo, commit, name) is not None), None)
    if location is None:
        found(Gap("CODEOWNERS", False, "no CODEOWNERS file: protected writes are routed by the policy alone",
                  "add .github/CODEOWNERS naming who owns what (Tether reads it from the base commit)"))
        return
    try:
        parsed = codeowners_lib.CodeOwners(show_file(repo, commit, location) or "")
    except Exception as exc:  # the library raises on a pattern it cannot read
        found(Gap("CODEOWNERS", False, f"{location} does not parse: {exc}", f"fix {location}"))
        return
    protected = list(policy.ownership.protected)
    uncovered = [pattern for pattern in protected
                 if any(compile_patterns([pattern]).match_file(f) and not parsed.of(f) for f in files)]
    found(Gap("CODEOWNERS", not uncovered,
              f"{location} parses and covers every path the policy protects" if not uncovered else
              f"{location} names no owner for files under {', '.join(uncovered)}, which the policy protects",
              "" if not uncovered else f"add owners for {', '.join(uncovered)} to {location}"))


def _policy(policy: Policy, policy_found: bool, found: Callable[[Gap], None]) -> None:
    if not policy_found:
        found(Gap("policy", False, "no tether.toml: runs get the defaults (no budget, no write cap, no check)",
                  "tether init", weight=2))
    budget = policy.budget
    bounded = any(v is not None for v in (budget.max_usd, budget.max_tokens, budget.max_wall_s, budget.max_steps))
    found(Gap("budgets", bounded, "a run is bounded" if bounded else "no budget bounds a run",
              "" if bounded else "[budget]\nmax_usd = 2.0\nmax_wall_s = 1800", weight=2))
    capped = policy.writes.max_files is not None or policy.writes.max_lines is not None
    found(Gap("write caps", capped, "a run's diff is capped" if capped else "no write cap: a run may change anything",
              "" if capped else "[writes]\nmax_files = 20\nmax_lines = 600"))
    required = [check.name for check in policy.checks if check.required]
    found(Gap("required checks", bool(required), f"required: {', '.join(required)}" if required else
              "no required check: nothing tells a run whether it worked",
              "" if required else '[[checks]]\nname = "tests"\ncommand = "python -m pytest -q"', weight=2))


def _secrets(repo: Path, files: list[str], history: int, found: Callable[[Gap], None]) -> None:
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    hits: list[str] = []
    with default_settings():
        current = SecretsCollection(root=str(repo))
        readable = [f for f in files if (repo / f).is_file() and (repo / f).stat().st_size <= SECRET_SCAN_LIMIT]
        current.scan_files(*readable, num_processors=1)
        hits += [f"{name}:{secret.line_number} ({secret.type})" for name, secret in current]
        diff = subprocess.run(["git", "log", "-p", "-n", str(history), "--format=", "--no-ext-diff",
                               "--no-textconv"], cwd=repo, capture_output=True, text=True, errors="replace",
                              env=git_env(None, repo)).stdout
        past = SecretsCollection(root=str(repo))
        with contextlib.suppress(Exception):  # a diff detect-secrets cannot read is no finding
            past.scan_diff(diff)
        hits += [f"history: {name} ({secret.type})" for name, secret in past if f"{name}:" not in " ".join(hits)]
    # Entropy alone flags hashes and fixtures (a pre-commit pin, a test vector); a secret in a test
    # folder is most often a fixture. Both are listed, neither fails the check.
    weak = [hit for hit in hits if "High Entropy" in hit or re.search(r"(^|/|: )tests?/", hit)]
    strong = [hit for hit in hits if hit not in weak]
    noted = f" ({len(weak)} weaker: high entropy only, or in tests)" if weak else ""
    found(Gap("secrets", not strong, f"detect-secrets found none in the files or the last {history} commits{noted}"
              if not strong else f"{len(strong)} possible secret(s): {'; '.join(sorted(set(strong))[:8])}{noted}",
              "" if not strong else "rotate them, remove them from the history, and keep secrets in the "
              "environment ([sandbox] pass_env never passes them)", weight=3))


def _binaries(repo: Path, found: Callable[[Gap], None]) -> None:
    large = []
    for line in git(repo, "ls-tree", "-r", "-l", "HEAD").splitlines():
        meta, path = line.split("\t", 1)
        size = meta.split()[3]
        if size.isdigit() and int(size) > LARGE_BYTES:
            large.append(f"{path} ({int(size) >> 20} MiB)")
    found(Gap("large files", not large, "no file over 5 MiB" if not large else f"large files: {', '.join(large[:5])}",
              "" if not large else "move them to LFS or out of the repository; add them to [writes] deny"))


def _docs(repo: Path, commit: str, files: list[str], found: Callable[[Gap], None]) -> None:
    docs = [f for f in files if re.match(r"^(README|CONTRIBUTING|HACKING|docs/CONTRIBUTING)[^/]*$", f, re.I)]
    says = [f for f in docs if TEST_WORDS.search(show_file(repo, commit, f) or "")]
    found(Gap("how to test", bool(says), f"{', '.join(says)} says how to run the tests" if says else
              "neither README nor CONTRIBUTING says how to run the tests (an agent reads them first)",
              "" if says else "add a 'Running the tests' section to CONTRIBUTING.md"))
