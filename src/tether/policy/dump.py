"""A policy written back as TOML (a calibrated candidate for a canary): the keys that differ from
the defaults, in tables, arrays of tables for checks and tiers."""

from __future__ import annotations

import json
from typing import Any

from tether.policy.schema import Policy


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _table(name: str, data: dict[str, Any], header: str) -> list[str]:
    scalars = {k: v for k, v in data.items() if v is not None and not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict) and v}
    lines = [header] + [f"{json.dumps(k) if not k.isidentifier() else k} = {_value(v)}" for k, v in scalars.items()]
    for key, sub in tables.items():
        lines += ["", *_table(f"{name}.{key}", sub, f"[{name}.{key}]")]
    return lines


def policy_toml(policy: Policy) -> str:
    data = policy.model_dump(mode="json", exclude_defaults=True)
    lines: list[str] = []
    for section, content in data.items():
        if isinstance(content, list):
            for item in content:
                lines += [*_table(section, item, f"[[{section}]]"), ""]
        elif content:
            lines += [*_table(section, content, f"[{section}]"), ""]
    return "\n".join(lines)
