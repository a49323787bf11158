"""What every request passes before a route sees it: the token, then a bounded body.

FastAPI reads and parses a route's body before its dependencies run, so a token check in a
dependency came too late: a few unauthenticated chunked uploads could grow the process until it
died, taking the webhook with it. Here, on every route but the webhook (which caps its own body
and is authenticated by its signature), a write is authenticated from its headers alone, and any
body is read only up to SENTINELOPS_API_MAX_BYTES before the route gets it.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webhook_service.auth import Authenticator
from webhook_service.errors import SentinelOpsError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OWN_LIMITS = frozenset({"/api/v1/webhooks/stripe"})  # reads, caps and authenticates itself
# Slack's interactions carry no bearer token: the route verifies their signature instead.
TOKENLESS = frozenset({"/api/v1/health", "/api/v1/slack/interactions"})


class PayloadTooLarge(SentinelOpsError):
    status_code = 413


def needs_token(path: str) -> bool:
    return path.startswith("/api/v1/") and path not in TOKENLESS


class RequestGuard:
    def __init__(self, app: ASGIApp, authenticator: Authenticator, max_bytes: int) -> None:
        self.app = app
        self.authenticator = authenticator
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OWN_LIMITS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)  # looked up, not copied into a dict per request
        try:
            if scope["method"] not in SAFE_METHODS and needs_token(scope["path"]):
                caller = self.authenticator.authenticate(headers.get("authorization"))
                scope.setdefault("state", {})["caller"] = caller
            body = await self._read_body(headers.get("content-length"), receive)
        except SentinelOpsError as exc:
            await exc.response()(scope, receive, send)
            return
        if body is None:  # the client went away
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # later calls wait for the disconnect, as usual
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read_body(self, declared: str | None, receive: Receive) -> bytes | None:
        limit = self.max_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"the body exceeds the {limit}-byte limit")
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the body exceeds the {limit}-byte limit")
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)
