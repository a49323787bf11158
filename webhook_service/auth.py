"""Who is calling: bearer tokens, each optionally named, and the actor history records.

`SENTINELOPS_API_TOKEN=alice=so_…,ci=so_…` names each holder: their changes are recorded as
`api:alice`. A bare token still works; its actor is an HMAC tag under the server's key, so the
history tells two holders apart without giving anyone a hash to test token guesses against
offline (an unsalted SHA-256 prefix did, with public reads on).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from sentinelops.settings import Settings
from webhook_service.errors import SentinelOpsError


class Unauthorized(SentinelOpsError):
    status_code = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="sentinelops"'})


class ApiTokenNotConfigured(SentinelOpsError):
    status_code = 503


@dataclass(frozen=True)
class Caller:
    actor: str  # as anomaly history records it: `api:alice`, or `api:<tag>` for a bare token


class Authenticator:
    def __init__(self, settings: Settings, server_key: Callable[[], bytes]) -> None:
        entries = settings.api_token_entries
        tag_key = b""
        if any(name is None for name, _ in entries):  # the key is read only when needed
            # A key of its own for actor tags, derived from the server key (which signs more).
            tag_key = hmac.new(server_key(), b"sentinelops actor tag", hashlib.sha256).digest()
        self._tokens = [
            (token.encode(), name or hmac.new(tag_key, token.encode(), "sha256").hexdigest()[:12])
            for name, token in entries
        ]
        self.public_reads = settings.public_reads

    def authenticate(self, authorization: str | None) -> Caller:
        """The caller an `Authorization` header names; Unauthorized or ApiTokenNotConfigured."""
        if not self._tokens:
            # Event payloads carry customer data: no token configured never means open.
            raise ApiTokenNotConfigured(
                "SENTINELOPS_API_TOKEN is not set; this endpoint stays closed until it is"
            )
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            raise Unauthorized("a bearer token is required")
        found = self.holder(presented)
        if found is None:
            raise Unauthorized("the bearer token is not valid")
        return Caller(actor=f"api:{found}")

    @property
    def configured(self) -> bool:
        return bool(self._tokens)

    def holder(self, presented: str) -> str | None:
        """The name (or tag) of the configured token `presented` is, else None."""
        # Compare against every token, in constant time, so timing reveals neither token nor index.
        found, presented_bytes = None, presented.encode()
        for token, name in self._tokens:
            if hmac.compare_digest(presented_bytes, token):
                found = name
        return found

    def holds(self, name: str) -> bool:
        """Whether a token of this holder is still configured (a removed token ends sessions)."""
        return any(hmac.compare_digest(name.encode(), n.encode()) for _, n in self._tokens)
