"""The environment a sandboxed command sees: an allow-list, never the caller's whole environment.

What commands need (PATH, locale, terminal, time zone) passes, plus the variables the policy names
in `[sandbox] pass_env`; a variable whose name or value looks secret never passes, named or not.
The names left out may be recorded; values never are."""

from __future__ import annotations

import re
from collections.abc import Mapping

from tether.redact import SECRET_NAME, looks_secret

ALWAYS = frozenset({"PATH", "LANG", "LANGUAGE", "TERM", "TZ", "NO_COLOR",
                    "SOURCE_DATE_EPOCH"})
_LOCALE = re.compile(r"^LC_[A-Z]+$")


def is_secret(name: str, value: str) -> bool:
    return bool(SECRET_NAME.search(name)) or looks_secret(value)


def sandbox_environment(environ: Mapping[str, str], pass_env: list[str]) -> tuple[dict[str, str], list[str]]:
    """(the variables a sandboxed command gets, the names of the secret-looking ones kept out).
    Variables that are simply not on the list are not named: which ones a shell happens to have
    is no part of a run's record."""
    kept: dict[str, str] = {}
    secret: list[str] = []
    for name, value in environ.items():
        if is_secret(name, value):
            secret.append(name)
        elif name in ALWAYS or _LOCALE.match(name) or name in pass_env:
            kept[name] = value
    return kept, sorted(secret)
