"""Read tether.toml into a validated Policy, or fail naming the file, the key path and the reason."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tether.errors import TetherError
from tether.policy.schema import FleetPolicy, Policy, TierPolicy

POLICY_FILE = "tether.toml"
ORG_POLICY_NAME = Path("<org policy>")


class PolicyError(TetherError):
    """A policy file that cannot be used. str() is the full, user-facing explanation."""

    def __init__(self, path: Path, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {problem}" for problem in problems))


def _key_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts) or "(top level)"


def _describe(error: dict) -> str:
    key = _key_path(tuple(error["loc"]))
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key"
    message = error["msg"].removeprefix("Value error, ")
    if kind not in ("missing",) and "input" in error and not isinstance(error["input"], dict):
        return f"{key}: {message} (got {error['input']!r})"
    return f"{key}: {message}"


def _toml(text: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(path, [f"invalid TOML: {exc}"]) from exc


def describe_errors(exc: ValidationError) -> list[str]:
    """One line per problem: the key path and what is wrong with it."""
    return [_describe(error) for error in exc.errors()]


def _validate(data: dict[str, Any], path: Path) -> Policy:
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(path, describe_errors(exc)) from exc


def parse_policy(text: str, path: Path) -> Policy:
    return _validate(_toml(text, path), path)


def _merge(under: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(under)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def layer_policy(org_text: str, repo_text: str | None, repo_path: Path) -> Policy:
    """The org policy with a repository's policy on top: the repository's keys win, except that
    fleet limits and the permission tiers belong to the org alone (a repository, which an agent may
    have written to, must not raise its own ceiling)."""
    org = _toml(org_text, ORG_POLICY_NAME)
    _validate(org, ORG_POLICY_NAME)
    repo = _toml(repo_text, repo_path) if repo_text is not None else {}
    for section, what in (("fleet", "fleet limits"), ("tiers", "permission tiers")):
        if section in repo:
            raise PolicyError(repo_path, [f"{section}: {what} belong to the org policy (tether fleet set FILE)"])
    return _validate(_merge(org, repo), repo_path)


def read_policy_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(path, [f"cannot read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise PolicyError(path, [f"not UTF-8 text: {exc.reason} at byte {exc.start}"]) from exc


def load_policy(path: Path) -> Policy:
    return parse_policy(read_policy_text(path), path)


def org_limits(org_text: str | None) -> FleetPolicy:
    """The fleet limits of the org policy (the defaults, none set, when there is none)."""
    return parse_policy(org_text, ORG_POLICY_NAME).fleet if org_text is not None else FleetPolicy()


def org_tiers(org_text: str | None) -> list[TierPolicy]:
    """The permission tiers of the org policy, lowest first (none when there is no org policy)."""
    return parse_policy(org_text, ORG_POLICY_NAME).tiers if org_text is not None else []


def find_policy(repo: Path, explicit: Path | None, org_text: str | None = None) -> tuple[Policy, Path | None]:
    """The explicit file, else the repository's tether.toml, else the defaults; layered over the
    org policy when one is set."""
    path = explicit if explicit is not None else repo / POLICY_FILE
    if explicit is None and not path.exists():
        path = None
    text = read_policy_text(path) if path is not None else None
    return policy_from_text(text, path or repo / POLICY_FILE, org_text), path


def policy_from_text(text: str | None, path: Path, org_text: str | None = None) -> Policy:
    """A repository policy's text (None: it has none), layered over the org policy when one is set."""
    if org_text is not None:
        return layer_policy(org_text, text, path)
    return parse_policy(text, path) if text is not None else Policy()


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def dump_policy(policy: Policy) -> str:
    """A repository policy file for `policy` (without the org's fleet limits and tiers), which loads
    back equal."""
    lines: list[str] = []
    for section, values in policy.model_dump(mode="json", exclude_none=True, exclude={"fleet", "tiers"}).items():
        if isinstance(values, list):
            for item in values:
                lines += [f"[[{section}]]", *(f"{k} = {toml_value(v)}" for k, v in item.items()), ""]
        else:
            lines += [f"[{section}]", *(f"{k} = {toml_value(v)}" for k, v in values.items()), ""]
    return "\n".join(lines)
