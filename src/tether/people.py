"""Who is acting. A person is authenticated, never a name typed on the command line: the OS user
running the command (from the process's own credentials, not $USER or $LOGNAME, which anyone sets),
or the holder of a token (`TETHER_TOKEN`, or a web session made from one). That name is the identity
the owner check uses. A token's role bounds what its holder may do; an OS user's rights come from
the policy (owners, teams, admins)."""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from typing import Literal

from tether.ledger import Ledger, tokens
from tether.ledger.fleet import Fleet
from tether.ledger.tokens import Role
from tether.policy.approvers import is_admin
from tether.policy.load import ORG_POLICY_NAME, parse_policy

TOKEN_ENV = "TETHER_TOKEN"


@dataclass(frozen=True)
class Actor:
    name: str
    via: Literal["os_user", "token"]
    role: Role | None = None  # a token's; None for an OS user

    @property
    def may_decide(self) -> bool:
        """A viewer's token sees, never decides."""
        return self.role != "viewer"

    def describe(self) -> str:
        return f"{self.name} (token, {self.role})" if self.via == "token" else f"{self.name} (OS user)"


def os_user() -> str:
    """The name of the user this process runs as."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid-{os.geteuid()}"


def acting(ledger: Ledger, token: str | None = None) -> Actor:
    """The person behind this command: a token's holder (the token given, else $TETHER_TOKEN), or
    the OS user. A token that is unknown, revoked or expired is refused (TokenRefused), never
    taken for the OS user."""
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    if token:
        holder = tokens.check(ledger, token)
        return Actor(holder.name, "token", holder.role)
    return Actor(os_user(), "os_user")


def administers(ledger: Ledger, actor: Actor) -> str | None:
    """None when `actor` may give and take access (tokens); else why not. An admin token may; an OS
    user may when the org policy names them among `[approvals] admins`, or, while it names nobody,
    whoever can write the store (it has no other way to be set up)."""
    if actor.via == "token":
        return None if actor.role == "admin" else f"{actor.describe()} is not an admin"
    org = Fleet(ledger).org_policy()
    approvals = parse_policy(org, ORG_POLICY_NAME).approvals if org is not None else None
    admins = approvals.admins if approvals is not None else []
    if approvals is None or not admins or is_admin(actor.name, approvals):
        return None
    return f"{actor.describe()} is not among the org policy's admins ({', '.join(admins)})"
