"""People's tokens: a name (the identity the owner check uses) and a role, kept as a hash. A token
is shown once, when it is made; `check` finds who holds one, refusing a revoked or expired one."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import insert, select, update

from tether.errors import TetherError
from tether.ledger import events as ev
from tether.ledger.schema import tokens
from tether.ledger.store import ACCESS_SOURCE, Ledger

ACCESS_LOG = ACCESS_SOURCE  # the hash-chained log of token events (tether verify access)

Role = Literal["viewer", "approver", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "approver", "admin")
PREFIX = "tt_"


class TokenRefused(TetherError):
    """A token that is unknown, revoked or expired, or one that cannot be made as asked."""


@dataclass(frozen=True)
class Holder:
    id: str
    name: str
    role: Role
    created_at: float
    created_by: str
    expires_at: float | None = None
    revoked_at: float | None = None
    revoked_by: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > time.time())


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(ledger: Ledger, name: str, role: Role, by: str, ttl_s: float | None = None) -> tuple[str, Holder]:
    """(the token, shown once; its record)."""
    if role not in ROLES:
        raise TokenRefused(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    if not name.strip() or len(name) > 200:
        raise TokenRefused("a token needs a person's name (1 to 200 characters)")
    token = PREFIX + secrets.token_urlsafe(32)
    holder = Holder(secrets.token_hex(6), name.strip().lstrip("@"), role, time.time(), by,
                    time.time() + ttl_s if ttl_s else None)
    with ledger.engine.begin() as conn:
        conn.execute(insert(tokens).values(id=holder.id, name=holder.name, role=holder.role,
                                           token_hash=_digest(token), created_at=holder.created_at,
                                           created_by=by, expires_at=holder.expires_at))
    _record(ledger, ev.TokenCreated(token_id=holder.id, name=holder.name, token_role=holder.role, by=by,
                                    expires_at=holder.expires_at))
    return token, holder


def _record(ledger: Ledger, payload: ev.Payload) -> None:
    ledger.record_in_log(ACCESS_LOG, "who was given access to this store", payload)


def check(ledger: Ledger, token: str) -> Holder:
    """Who holds `token`; TokenRefused when it is unknown, revoked or expired."""
    with ledger.engine.connect() as conn:
        row = conn.execute(select(tokens).where(tokens.c.token_hash == _digest(token))).first()
    if row is None:
        raise TokenRefused("the token is not known to this store")
    holder = _holder(row)
    if holder.revoked_at is not None:
        raise TokenRefused(f"the token of {holder.name} was revoked")
    if not holder.active:
        raise TokenRefused(f"the token of {holder.name} has expired")
    return holder


def revoke(ledger: Ledger, token_id: str, by: str) -> Holder:
    with ledger.engine.begin() as conn:
        done = conn.execute(update(tokens).where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
                            .values(revoked_at=time.time(), revoked_by=by)).rowcount
        row = conn.execute(select(tokens).where(tokens.c.id == token_id)).first()
    if row is None:
        raise TokenRefused(f"no token {token_id!r}")
    if not done:
        raise TokenRefused(f"token {token_id} was already revoked")
    holder = _holder(row)
    _record(ledger, ev.TokenRevoked(token_id=holder.id, name=holder.name, by=by))
    return holder


def holder(ledger: Ledger, token_id: str) -> Holder | None:
    """A token's record by its id (a web session names the token it was made from)."""
    with ledger.engine.connect() as conn:
        row = conn.execute(select(tokens).where(tokens.c.id == token_id)).first()
    return _holder(row) if row is not None else None


def listed(ledger: Ledger) -> list[Holder]:
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(tokens).order_by(tokens.c.created_at)).all()
    return [_holder(row) for row in rows]


def _holder(row) -> Holder:  # type: ignore[no-untyped-def]
    data = dict(row._mapping)
    data.pop("token_hash")
    return Holder(**data)
