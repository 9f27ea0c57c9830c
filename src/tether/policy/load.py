"""Read tether.toml into a validated Policy, or fail naming the file, the key path and the reason."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import ValidationError

from tether.policy.schema import Policy

POLICY_FILE = "tether.toml"


class PolicyError(Exception):
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


def parse_policy(text: str, path: Path) -> Policy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(path, [f"invalid TOML: {exc}"]) from exc
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(path, [_describe(e) for e in exc.errors()]) from exc


def load_policy(path: Path) -> Policy:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(path, [f"cannot read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise PolicyError(path, [f"not UTF-8 text: {exc.reason} at byte {exc.start}"]) from exc
    return parse_policy(text, path)


def find_policy(repo: Path, explicit: Path | None) -> tuple[Policy, Path | None]:
    """The explicit file, else the repository's tether.toml, else the defaults."""
    if explicit is not None:
        return load_policy(explicit), explicit
    candidate = repo / POLICY_FILE
    if candidate.exists():
        return load_policy(candidate), candidate
    return Policy(), None
