"""Secrets out of everything Tether records: values that look like credentials are masked.

Detection uses the regex detectors of detect-secrets (Yelp's maintained scanner: AWS, GitHub,
GitLab, Slack tokens and webhooks, Stripe, JWTs, private keys, URLs with a password, ...), plus
token formats it does not know yet, plus the exact values of the secret-looking variables in
Tether's own environment (whatever they look like)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

MASK = "[masked]"
# Public addresses are not secrets. The vendor keyword detectors (Cloudant, IBM, SoftLayer: an
# assignment to a name like `cl_key`) mostly flag ordinary code and cost more than all the others
# together; their URL forms stay.
_NOT_SECRETS = {"IPPublicDetector"}
_KEYWORD_FORM = "(?:(?<=\\W)|(?<=^))"
# Formats detect-secrets does not know (yet). No leading \b: a literal start keeps the search fast.
_MORE_FORMATS = [
    r"sk-(?:proj-|ant-[a-z0-9]+-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}",  # OpenAI, Anthropic
    r"github_pat_[A-Za-z0-9_]{22,}",
    r"gh[pousr]_[A-Za-z0-9]{20,}",
    r"glpat-[A-Za-z0-9_\-]{20,}",
    r"hf_[A-Za-z0-9]{30,}",
    r"AIza[0-9A-Za-z_\-]{35}",
    r"npm_[A-Za-z0-9]{36}",
    r"xox[a-z]-[A-Za-z0-9\-]{10,}",
    r"https://(?:discord(?:app)?\.com/api/webhooks|hooks\.slack\.com/(?:services|workflows|triggers))/[^\s\"'<>]+",
    r"https://[a-z0-9.\-]*webhook\.office\.com/[^\s\"'<>]+",
    r"(?i)authorization\s*[:=]\s*(?:bearer|basic|token)\s+([A-Za-z0-9._~+/=\-]{8,})",
    r"(?i)bearer\s+([A-Za-z0-9._~+/\-]{20,}=*)",
]
# A private key's whole block: detect-secrets finds its first line only, and the key is the body.
_PRIVATE_KEY_BLOCK = re.compile(r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?"
                                r"(?:-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)", re.DOTALL)
# A value given to a secret's name, as in an env file, an ini file, a connection string or code:
# `DB_PASSWORD=Xy7#kLm9`, `password = 'hunter2hunter2'`, `AccountKey=...;`. Unquoted, it counts when
# it holds a digit or a sign that no name holds (`api_key = os.environ.get(...)` stays readable).
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)(?:passw(?:or)?d|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|account[_-]?key|"
    r"credentials?)[\w.-]*[\"']?\s*[:=]\s*([\"']?)([^\s\"'(),;{}\[\]<>`]{8,})")
_NAME_LIKE = re.compile(r"^[A-Za-z_.]+$")
# What is left of a token when a detector's pattern ends before the token does (a JWT's signature,
# a longer token than its format says): masked with it.
_MASK_RESIDUE = re.compile(re.escape(MASK) + r"[A-Za-z0-9_\-+/=]+(?:\.[A-Za-z0-9_\-+/=]+)*")
# Names of variables whose values Tether keeps out of sandboxes and masks wherever they appear.
SECRET_NAME = re.compile(
    r"KEY|TOKEN|SECRET|PASSW|PASSWD|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|SIGNATURE|DSN|_PAT$|^PAT_|WEBHOOK"
    r"|DATABASE_URL|^TETHER_|^AWS_|^GCP_|^AZURE_|^GOOGLE_APPLICATION",
    re.IGNORECASE,
)
_MIN_VALUE = 8  # shorter values would mask ordinary words
# Tether's own settings that are plainly not secret (a folder): masking them would hide the paths
# runs record.
NOT_SECRET = frozenset({"TETHER_MIRRORS"})


# Detectors whose patterns start with a character class scan slowly; these cheap patterns must
# match first (each is a necessary part of its detector's matches).
_GATES = {
    "TelegramBotTokenDetector": r":[0-9A-Za-z_-]{35}",
    "MailchimpDetector": r"-us[0-9]",
    "DiscordBotTokenDetector": r"\.[a-zA-Z\d_-]{6}\.[a-zA-Z\d_-]{27}",
}


@dataclass(frozen=True)
class _Detector:
    pattern: re.Pattern[str]
    gate: re.Pattern[str] | None

    def sub(self, text: str) -> str:
        if self.gate is not None and self.gate.search(text) is None:
            return text
        return self.pattern.sub(_masked_match, text)


@dataclass(frozen=True)
class _Detectors:
    """Detectors grouped by a substring each one's matches must contain: a text is searched only
    by the detectors whose substring it holds (a plain `in`, much cheaper than a regex scan)."""
    by_literal: list[tuple[str, list[_Detector]]]
    by_folded_literal: list[tuple[str, list[_Detector]]]  # case-insensitive patterns
    always: list[_Detector]

    def candidates(self, text: str) -> list[_Detector]:
        chosen = list(self.always)
        for literal, detectors in self.by_literal:
            if literal in text:
                chosen += detectors
        if self.by_folded_literal:
            lowered = text.lower()
            for literal, detectors in self.by_folded_literal:
                if literal in lowered:
                    chosen += detectors
        return chosen


def _required_literal(pattern: re.Pattern[str]) -> str | None:
    """The longest run of plain characters at the top level of the pattern (outside groups,
    classes and quantified atoms), which every match must contain; None when under 2 characters
    or when the pattern has top-level alternatives."""
    source, best, run, depth, i = pattern.pattern, "", "", 0, 0
    while i < len(source):
        char = source[i]
        literal: str | None = None
        if char == "\\" and i + 1 < len(source):
            escaped = source[i + 1]
            literal = None if escaped.isalnum() else escaped  # \d, \b, ... are not characters
            i += 2
        elif char == "[":
            i = _class_end(source, i)
        elif char == "{":  # a quantifier's bounds
            i = source.find("}", i) + 1 or len(source)
        else:
            i += 1
            if char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
            elif char == "|" and depth == 0:
                return None
            elif depth == 0 and char not in ".^$*+?}":
                literal = char
        if depth == 0 and literal is not None and (i >= len(source) or source[i] not in "*+?{"):
            run += literal
        else:
            best, run = max(best, run, key=len), ""
    best = max(best, run, key=len)
    if len(best) < 2:
        return None
    return best.lower() if pattern.flags & re.IGNORECASE else best


def _class_end(source: str, start: int) -> int:
    """The index after the character class opening at `start`."""
    i = start + 1
    if i < len(source) and source[i] == "^":
        i += 1
    if i < len(source) and source[i] == "]":
        i += 1
    while i < len(source) and source[i] != "]":
        i += 2 if source[i] == "\\" else 1
    return i + 1


@cache
def _detectors() -> _Detectors:
    # Imported on first use: detect-secrets brings requests along, which costs every CLI call.
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    found: list[tuple[re.Pattern[str], str | None]] = []
    for plugin in get_mapping_from_secret_type_to_class().values():
        if plugin.__name__ in _NOT_SECRETS:
            continue
        for pattern in getattr(plugin, "denylist", []):
            if not pattern.pattern.startswith(_KEYWORD_FORM):
                found.append((pattern, _GATES.get(plugin.__name__)))
    found += [(re.compile(pattern), None) for pattern in _MORE_FORMATS]
    exact: dict[str, list[_Detector]] = {}
    folded: dict[str, list[_Detector]] = {}
    always: list[_Detector] = []
    for pattern, gate in found:
        detector = _Detector(pattern, re.compile(gate) if gate else None)
        literal = _required_literal(pattern)
        if literal is None:
            always.append(detector)
        else:
            (folded if pattern.flags & re.IGNORECASE else exact).setdefault(literal, []).append(detector)
    return _Detectors(list(exact.items()), list(folded.items()), always)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of the secret-looking variables of an environment (Tether's own by default)."""
    environ = os.environ if environ is None else environ
    values = {value for name, value in environ.items()
              if SECRET_NAME.search(name) and name not in NOT_SECRET and len(value) >= _MIN_VALUE}
    return sorted(values, key=len, reverse=True)


def looks_secret(value: str) -> bool:
    return mask(value, []) != value


def mask(text: str, known: list[str] | None = None) -> str:
    """`text` with every detected secret (and every known secret value) replaced by MASK."""
    if len(text) < _MIN_VALUE:
        return text
    for value in secret_values() if known is None else known:
        if value in text:
            text = text.replace(value, MASK)
    if "PRIVATE KEY" in text:
        text = _PRIVATE_KEY_BLOCK.sub(MASK, text)
    for detector in _detectors().candidates(text):
        text = detector.sub(text)
    text = _SECRET_ASSIGNMENT.sub(_masked_assignment, text)
    return _MASK_RESIDUE.sub(MASK, text) if MASK in text else text


def _masked_assignment(match: re.Match[str]) -> str:
    quoted, value = match.group(1), match.group(2)
    if value.startswith(MASK) or value.lower().startswith(("http://", "https://", "/", "./", "$")) or (
            not quoted and _NAME_LIKE.match(value)) or not any(char.isalpha() for char in value):
        return match.group()
    start = match.start(2) - match.start()
    return match.group()[:start] + MASK + match.group()[start + len(value):]


def _masked_match(match: re.Match[str]) -> str:
    """The match masked, or only its secret part where the pattern captures it in one group
    (the password of a URL): the rest stays readable."""
    if match.re.groups == 1 and len(match.group(1) or "") >= _MIN_VALUE:
        start, end = match.span(1)
        whole_start = match.start()
        return match.group()[: start - whole_start] + MASK + match.group()[end - whole_start:]
    return MASK


def mask_payload(value: Any, known: list[str] | None = None) -> Any:
    """A JSON-like value with every string in it masked (keys are names, not values: kept)."""
    known = secret_values() if known is None else known
    if isinstance(value, str):
        return mask(value, known)
    if isinstance(value, dict):
        return {key: mask_payload(item, known) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_payload(item, known) for item in value]
    return value
