"""A permission tier on top of a policy, and the configuration a tier is earned by."""

from __future__ import annotations

import hashlib
import json

from tether.errors import TetherError
from tether.policy.schema import DELIVERY_ORDER, Policy, TierPolicy


class TierRefusal(TetherError):
    """The run asks for something its tier does not allow at all (an architecture)."""


def _smaller(limit: int | None, cap: int | None) -> int | None:
    return cap if limit is None else limit if cap is None else min(limit, cap)


def apply_tier(policy: Policy, tier: TierPolicy, architecture: str) -> Policy:
    """`policy` narrowed to what `tier` allows: the furthest delivery, write caps, network, extra
    denied commands. A tier never widens the policy. Raises TierRefusal when the tier does not
    allow the run's architecture ("harness", "orchestrated", "agent:<name>")."""
    if tier.architectures is not None and architecture not in tier.architectures:
        raise TierRefusal(f"tier {tier.name!r} allows the architectures {', '.join(tier.architectures)}, "
                          f"not {architecture!r}")
    mode = min(policy.delivery.mode, tier.delivery, key=DELIVERY_ORDER.index)
    return policy.model_copy(update={
        "delivery": policy.delivery.model_copy(update={"mode": mode, "draft": policy.delivery.draft or tier.draft}),
        "writes": policy.writes.model_copy(update={"max_files": _smaller(policy.writes.max_files, tier.max_files),
                                                   "max_lines": _smaller(policy.writes.max_lines, tier.max_lines)}),
        "commands": policy.commands.model_copy(update={
            "network": policy.commands.network and tier.network,
            "deny": [*policy.commands.deny, *(r for r in tier.commands_deny if r not in policy.commands.deny)]}),
    })


def configuration_of(policy: Policy, model: str, architecture: str) -> str:
    """What a tier is earned by, with the repository: the architecture, the model and a digest of
    the rest of the agent settings (prompt, attempts, action format...), so a changed prompt starts over."""
    settings = policy.agent.model_dump(mode="json", exclude={"model", "architecture"})
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return f"{architecture} {model} #{digest}"
