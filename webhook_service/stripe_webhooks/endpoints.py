"""POST /api/v1/webhooks/stripe: verify, store, answer. No analysis happens here."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import psycopg
from fastapi import APIRouter, Request, Response
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic import BaseModel

from sentinelops.settings import Settings
from webhook_service.stripe_webhooks import repository
from webhook_service.stripe_webhooks.verify import (
    WebhookNotConfigured,
    WebhookRejected,
    verify,
)

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])

EXCERPT_CHARS = 256
REJECTION_DB_TIMEOUT = 1.0  # a rejection's audit row must not hold the 4xx back for long
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad signature, stale timestamp or malformed body (see `reason`)"},
    413: {"description": "Body over SENTINELOPS_WEBHOOK_MAX_BYTES"},
    503: {"description": "Database unavailable or no webhook secret configured; Stripe retries"},
}


async def _read_limited(request: Request, limit: int) -> bytes:
    """The body, refusing anything over `limit` before reading it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


class StoredEvent(BaseModel):
    id: str
    stored: bool  # true the first time this event id arrives
    duplicate: bool  # true for a redelivery: nothing new was stored


def _too_large(size: int, limit: int) -> WebhookRejected:
    error = WebhookRejected("too_large", f"the body exceeds the {limit}-byte limit", 413)
    error.body_size = size  # type: ignore[attr-defined]
    return error


@router.post(
    "/webhooks/stripe",
    responses=ERRORS,
    response_model=StoredEvent,
    summary="Receive a Stripe webhook event",
)
async def receive_stripe_event(request: Request) -> Response:
    """Verify the Stripe signature on the raw body and store the event exactly once.

    2xx only after the event is committed; a redelivery answers 2xx and stores nothing new.
    """
    # No FastAPI dependencies here: this is the hot path, and reading app.state directly skips
    # their resolution on every request (they were plain `def`, a thread-pool hop each).
    started = time.perf_counter()
    state = request.app.state
    settings: Settings = state.settings
    outcome = "unavailable"
    try:
        secrets = settings.webhook_secret_values
        if not secrets:
            raise WebhookNotConfigured(
                "STRIPE_WEBHOOK_SECRET is not set: no event can be verified, so none is accepted"
            )
        body = b""
        try:
            body = await _read_limited(request, settings.webhook_max_bytes)
            event = verify(
                body,
                request.headers.get("stripe-signature"),
                secrets,
                settings.webhook_tolerance_seconds,
            )
        except WebhookRejected as rejected:
            outcome = rejected.outcome
            await _record(state.pool, request, rejected, body)
            raise
        inserted = await state.writer.store(event)
        outcome = "stored" if inserted else "duplicate"
        answer = {"id": event.id, "stored": inserted, "duplicate": not inserted}
        return Response(json.dumps(answer), media_type="application/json")
    finally:
        state.metrics.observe_webhook(outcome, time.perf_counter() - started)


async def _record(
    pool: AsyncConnectionPool, request: Request, rejected: WebhookRejected, body: bytes
) -> None:
    """Keep a row per rejection (reason, size, hash, a capped excerpt), never the whole body."""
    body_size = getattr(rejected, "body_size", len(body))
    excerpt = body[: EXCERPT_CHARS * 4].decode("utf-8", "replace")[:EXCERPT_CHARS]
    try:
        async with pool.connection(timeout=REJECTION_DB_TIMEOUT) as conn:
            await repository.record_rejection(
                conn,
                reason=rejected.reason,
                client_addr=request.client.host if request.client else None,
                body_size=body_size,
                body_sha256=hashlib.sha256(body).hexdigest()
                if rejected.reason != "too_large"
                else None,
                excerpt=excerpt.replace("\x00", "") or None,
            )
    except (psycopg.Error, PoolTimeout) as exc:
        # The sender still gets its 4xx; losing the audit row must not turn it into a 5xx.
        log.warning("rejection %s not recorded: %s", rejected.reason, type(exc).__name__)
