"""What may be remembered. An entry is shown to every later run of the repository, so it is refused
when it could carry something across runs that no run should get: a secret, an instruction to
disobey the policy (a prompt injection planted for the next run), or more text than a note needs.

An injection is recognised in the entry as written and in two normal forms, so that spacing,
zero-width characters, look-alike letters and digits for letters do not hide it: the text folded
(NFKC, lower case, marks and invisible characters removed) and the same with every non-letter
removed ("i.g n-0 r e   the   r u l e s" is "ignoretherules")."""

from __future__ import annotations

import re
import unicodedata

from tether.policy.schema import MemoryPolicy
from tether.redact import mask

Refusal = tuple[str, str]  # (rule, reason)

_VERBS = (r"ignore|ignoring|disregard|bypass|circumvent|override|overrule|evade|dodge|skip|disable|turn off|"
          r"switch off|get around|work around|workaround|sidestep|defeat|violate|break|forget|drop|suspend|"
          r"neutrali[sz]e|not follow|not obey|not respect|not apply|no longer follow|no longer apply")
_TARGETS = (r"polic(?:y|ies)|rules?|guard(?:rails?)?|tether|instructions?|directives?|restrictions?|"
            r"constraints?|approvals?|reviews?|permissions?|sandbox|deny|denials?|owners?|codeowners|"
            r"budgets?|brakes?|limits?|caps?|required checks?|safeguards?|safety|security|system prompt|guidelines")
# A verb of disobedience aimed at what governs the run, within a few words.
_DISOBEY = re.compile(rf"\b(?:{_VERBS})\b(?:\W+\w+){{0,6}}?\W+(?:{_TARGETS})\b")
# Claims and role-play that hand the next run rights it does not have.
_CLAIMS = re.compile(
    r"\b(?:you (?:are|were) (?:now )?(?:allowed|permitted|authori[sz]ed|free|cleared) to"
    r"|(?:no|without) (?:need (?:to|for) )?(?:approval|permission|review|sign-?off)s? (?:is |are )?(?:needed|required)"
    r"|(?:do not|don't|never|no need to) (?:ask|wait) for (?:approval|permission|review|an owner)"
    r"|(?:pre-?)?(?:approved|authori[sz]ed|signed off) (?:in advance |already )?by (?:the )?(?:owners?|admins?|"
    r"maintainers?|security|team|tether|a person|someone)"
    r"|new (?:system )?instructions|system prompt|developer mode|jailbreak|act as (?:an? )?(?:admin|root|owner)"
    r"|from now on,? (?:you|always|never))")
_ROLE_MARKERS = re.compile(r"(?m)^\s*(?:<\|?/?(?:system|im_start|im_end|assistant|user)\|?>|\[/?(?:INST|SYS)\]|"
                           r"#+\s*(?:system|instructions?)\b|(?:system|assistant)\s*:)", re.IGNORECASE)
# In the squashed form word boundaries are gone, so only the unambiguous words count there.
_SQUASHED = re.compile(r"(?:ignore|disregard|bypass|circumvent|override|overrule|evade|sidestep)"
                       r"(?:the|all|any|every|your|these|those|previous|prior|above|earlier|tethers?|of|its|my|our)*"
                       r"(?:polic(?:y|ies)|rules|guard(?:rails?)?|tether|instructions|restrictions|approvals?|"
                       r"permissions|sandbox|denyrules|codeowners|safeguards|systemprompt)")
# Cyrillic and Greek letters drawn like Latin ones (Unicode's confusables, the common ones).
_LOOKALIKES = str.maketrans("асеіјоԁԛрѕуһхьѵνοαρτκιεһɡӏ", "aceijodqpsyhxbvvoaptkiehgl")
# Digits and signs written for letters ("1gn0re", "@pprovals").
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a", "$": "s",
                       "!": "i", "|": "l"})


def folded(text: str) -> str:
    """NFKC, lower case, without combining marks or invisible format characters, spaces collapsed."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text))
    kept = "".join(ch for ch in decomposed if unicodedata.category(ch) not in ("Mn", "Cf", "Cc") or ch in "\n\t")
    return re.sub(r"[ \t]+", " ", kept.casefold().translate(_LOOKALIKES))


def squashed(text: str) -> str:
    """The folded text with digits read as letters and every non-letter removed."""
    return "".join(ch for ch in folded(text).translate(_LEET) if ch.isalpha())


def injection(text: str) -> str | None:
    """What in `text` reads as an instruction to get around the policy, or None."""
    plain = folded(text)
    for form in (plain, plain.translate(_LEET)):
        for pattern in (_DISOBEY, _CLAIMS):
            match = pattern.search(form)
            if match is not None:
                return match.group(0)
    if (match := _ROLE_MARKERS.search(plain)) is not None:
        return match.group(0).strip()
    if (match := _SQUASHED.search(squashed(text))) is not None:
        return match.group(0)
    return None


def refusal(text: str, policy: MemoryPolicy, written_by_run: int, live_entries: int) -> Refusal | None:
    """Why an entry may not be kept (rule, reason), or None. `written_by_run`: entries this run kept
    so far; `live_entries`: the repository's active and pending entries."""
    if not policy.enabled:
        return "memory.off", "memory is off for this repository ([memory] enabled = false)"
    if not text.strip():
        return "memory.empty", "an empty note"
    if len(text) > policy.max_entry_chars:
        return "memory.max_entry_chars", (f"the note has {len(text)} characters; at most {policy.max_entry_chars} "
                                          "([memory] max_entry_chars): keep the one fact a later run needs")
    if mask(text) != text:
        return "memory.secret", "the note holds what looks like a secret; a secret is never kept"
    found = injection(text)
    if found is not None:
        return "memory.instruction", (f"the note reads as an instruction to get around the policy ({found[:80]!r}); "
                                      "notes may say how the repository works, never what the policy allows")
    if written_by_run >= policy.max_per_run:
        return "memory.max_per_run", f"this run kept {written_by_run} notes; at most {policy.max_per_run} per run"
    if live_entries >= policy.max_entries:
        return "memory.max_entries", (f"the repository has {live_entries} notes; at most {policy.max_entries} "
                                      "([memory] max_entries): a person forgets old ones with tether memory forget")
    return None
