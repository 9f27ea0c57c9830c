"""Gitignore-style path patterns, compiled once."""

from __future__ import annotations

import pathspec


def compile_patterns(patterns: list[str]) -> pathspec.PathSpec:
    try:
        return pathspec.PathSpec.from_lines("gitignore", patterns)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid path pattern: {exc}") from exc

