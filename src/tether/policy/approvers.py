"""Who may approve a protected write: the one rule every approval path applies (the terminal,
`tether approve`, a worker, a web page), so that no path is a way around it."""

from __future__ import annotations

from tether.policy.schema import ApprovalsPolicy


def _handle(name: str) -> str:
    return name.lstrip("@").lower()


def may_approve(who: str, owners: list[str], policy: ApprovalsPolicy) -> bool:
    """An owner named directly, a member of an owning team, or an admin."""
    person = _handle(who)
    if person in {_handle(admin) for admin in policy.admins}:
        return True
    for owner in owners:
        if _handle(owner) == person:
            return True
        members = next((m for team, m in policy.teams.items() if _handle(team) == _handle(owner)), [])
        if person in {_handle(member) for member in members}:
            return True
    return False
