"""Console sessions: a signed cookie naming the token holder, with its CSRF token inside.

The cookie is `base64(json).hmac`: the holder's name, when it expires and a random CSRF token,
signed with a key of its own derived from the server key (SENTINELOPS_SESSION_KEY, else
`$SENTINELOPS_HOME/session-key`). Nothing is stored server-side, so every API process of one
deployment accepts it as long as they share the key; a session ends when it expires, when the
person signs out (the cookie is cleared), or when the holder's token is removed from
SENTINELOPS_API_TOKEN (checked on every request).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

COOKIE = "sentinelops_session"
LIFETIME_SECONDS = 12 * 3600  # a working day; then sign in again


@dataclass(frozen=True)
class Session:
    holder: str  # the token's name (or tag): the actor is `console:<holder>`
    csrf: str
    expires: int

    @property
    def actor(self) -> str:
        return f"console:{self.holder}"


class SessionSigner:
    def __init__(self, server_key: bytes) -> None:
        # A key of its own: a cookie signature must never double as an actor tag or vice versa.
        self._key = hmac.new(server_key, b"sentinelops console session", hashlib.sha256).digest()

    def issue(self, holder: str, now: float | None = None) -> tuple[Session, str]:
        """A new session for `holder` and the cookie value that carries it."""
        expires = int((now or time.time()) + LIFETIME_SECONDS)
        session = Session(holder=holder, csrf=secrets.token_urlsafe(24), expires=expires)
        payload = json.dumps({"h": holder, "c": session.csrf, "e": expires}, separators=(",", ":"))
        body = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
        return session, f"{body}.{self._sign(body)}"

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie carries, or None when it is missing, forged or expired."""
        if not cookie or cookie.count(".") != 1:
            return None
        body, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            session = Session(holder=str(data["h"]), csrf=str(data["c"]), expires=int(data["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires <= (now or time.time()):
            return None
        return session

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()


def csrf_matches(session: Session, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(session.csrf, presented)
