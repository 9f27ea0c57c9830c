"""Who may approve a protected write: the one rule every approval path applies (the terminal,
`tether approve`, a worker, a web page), so that no path is a way around it."""

from __future__ import annotations

from tether.policy.schema import ApprovalsPolicy


def _handle(name: str) -> str:
    return name.lstrip("@").lower()


def is_admin(who: str, policy: ApprovalsPolicy) -> bool:
    return _handle(who) in {_handle(admin) for admin in policy.admins}


def may_approve(who: str, owners: list[str], policy: ApprovalsPolicy) -> bool:
    """An owner named directly, a member of an owning team, or an admin."""
    person = _handle(who)
    if is_admin(who, policy):
        return True
    for owner in owners:
        if _handle(owner) == person:
            return True
        members = next((m for team, m in policy.teams.items() if _handle(team) == _handle(owner)), [])
        if person in {_handle(member) for member in members}:
            return True
    return False


def refusal(by: str, approved: bool, owners: list[str], policy: ApprovalsPolicy, requester: str | None,
            acting: str | None = None) -> tuple[str, str] | None:
    """(rule, reason) when `by` may not give this answer, else None. Anyone may deny; only an owner
    (or a team member, or an admin) may approve, and never whoever asked for the run. `acting`: the
    admin who records `by`'s decision on their behalf (checked by the caller), who may not be the
    requester either."""
    if not approved:
        return None
    for person in (by, acting):
        if person is not None and requester is not None and _handle(person) == _handle(requester):
            return ("approvals.requester", f"{person} asked for this run and may not approve its own request; "
                    "an owner must")
    if not may_approve(by, owners, policy):
        return "approvals.not_owner", f"{by} may not approve: owners are {', '.join(owners)} (or an admin)"
    return None
