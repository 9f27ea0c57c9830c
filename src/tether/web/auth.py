"""Who is using the web app. A person signs in with their token (`tether token create`); the session
is a signed cookie naming the token, checked on every request, so a revoked or expired token ends
its sessions at once. Every form and every state-changing request carries a CSRF token bound to the
session. The API takes the token itself (`Authorization: Bearer ...`), which a browser never sends
on its own. `--no-auth`, on loopback only, makes everyone the OS user running `tether serve`."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass

from tether.ledger import Ledger, tokens
from tether.people import Actor, os_user

COOKIE = "tether_session"
CSRF_HEADER = "x-csrf-token"
SESSION_S = 12 * 3600
_OS_USER_SESSION = "os-user"


class NotSignedIn(Exception):
    """No valid session or token: sign in (pages) or 401 (API)."""


@dataclass(frozen=True)
class Sessions:
    """Signs and checks session cookies with a key of this process (sessions end when it does)."""

    key: bytes
    open: bool = False  # --no-auth: no sign-in, everyone is the OS user

    @classmethod
    def new(cls, open_: bool = False) -> Sessions:
        return cls(secrets.token_bytes(32), open_)

    def _sign(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()

    def cookie_for(self, token_id: str, now: float | None = None) -> str:
        body = f"{token_id}.{int((now or time.time()) + SESSION_S)}.{secrets.token_hex(8)}"
        return f"{body}.{self._sign(body)}"

    def actor(self, ledger: Ledger, cookie: str | None, now: float | None = None) -> Actor:
        """The person a session cookie stands for; NotSignedIn when it is missing, forged, expired,
        or its token was revoked or has expired."""
        if not cookie:
            raise NotSignedIn("not signed in")
        body, _, signature = cookie.rpartition(".")
        if not body or not hmac.compare_digest(self._sign(body), signature):
            raise NotSignedIn("the session is not one this server made")
        token_id, expires, _nonce = [*body.split("."), "", "", ""][:3]
        if not expires.isdigit() or int(expires) < (now or time.time()):
            raise NotSignedIn("the session has expired; sign in again")
        if token_id == _OS_USER_SESSION and self.open:
            return Actor(os_user(), "os_user")
        holder = tokens.holder(ledger, token_id)
        if holder is None or not holder.active:
            raise NotSignedIn("the token this session was made from was revoked or has expired")
        return Actor(holder.name, "token", holder.role)

    def open_cookie(self) -> str:
        """--no-auth: a session for the OS user (still a cookie, so forms still carry a CSRF token)."""
        return self.cookie_for(_OS_USER_SESSION)

    def csrf(self, cookie: str) -> str:
        return self._sign(f"csrf:{cookie}")[:32]

    def csrf_ok(self, cookie: str | None, sent: str | None) -> bool:
        return bool(cookie and sent) and hmac.compare_digest(self.csrf(cookie or ""), sent or "")


def sign_in(ledger: Ledger, sessions: Sessions, token: str) -> tuple[str, Actor]:
    """A session cookie for the holder of `token` (TokenRefused when it is unknown, revoked or expired)."""
    holder = tokens.check(ledger, token.strip())
    return sessions.cookie_for(holder.id), Actor(holder.name, "token", holder.role)


def bearer_actor(ledger: Ledger, authorization: str | None) -> Actor | None:
    """The holder of an `Authorization: Bearer` token, None when there is none (TokenRefused when bad)."""
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    holder = tokens.check(ledger, authorization[7:].strip())
    return Actor(holder.name, "token", holder.role)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
