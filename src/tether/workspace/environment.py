"""The environment a sandboxed command sees: the caller's, minus anything that looks secret."""

from __future__ import annotations

import re
from collections.abc import Mapping

_SECRET_NAME = re.compile(
    r"KEY|TOKEN|SECRET|PASSW|PASSWD|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|SIGNATURE|DSN"
    r"|DATABASE_URL|^TETHER_|^AWS_|^GCP_|^AZURE_|^GOOGLE_APPLICATION",
    re.IGNORECASE,
)
# A URL with user:password@ carries a credential whatever the variable is called.
_CREDENTIAL_URL = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


def looks_secret(name: str, value: str) -> bool:
    return bool(_SECRET_NAME.search(name) or _CREDENTIAL_URL.search(value))


def scrub(env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """(kept variables, names of dropped ones). The names may be logged; values never are."""
    kept: dict[str, str] = {}
    dropped: list[str] = []
    for name, value in env.items():
        if looks_secret(name, value):
            dropped.append(name)
        else:
            kept[name] = value
    return kept, sorted(dropped)
