"""SQL for the webhook: store an event once, count redeliveries, record rejections."""

from __future__ import annotations

from psycopg import AsyncConnection

from webhook_service.stripe_webhooks.verify import VerifiedEvent

# One statement inserts or counts a redelivery, so 50 concurrent deliveries are one row.
STORE_EVENT = """
INSERT INTO stripe_events (id, type, created, livemode, api_version, account, payload, source)
VALUES (%(id)s, %(type)s, to_timestamp(%(created)s), %(livemode)s, %(api_version)s,
        %(account)s, %(payload)s::jsonb, 'webhook')
ON CONFLICT (id) DO UPDATE
   SET deliveries = stripe_events.deliveries + 1, last_received_at = now()
RETURNING (xmax = 0) AS inserted
"""

RECORD_REJECTION = """
INSERT INTO webhook_rejections (reason, client_addr, body_size, body_sha256, excerpt)
VALUES (%(reason)s, %(client_addr)s, %(body_size)s, %(body_sha256)s, %(excerpt)s)
"""


async def store_event(conn: AsyncConnection, event: VerifiedEvent) -> bool:
    """True if the event is new, False if it was a redelivery."""
    cur = await conn.execute(
        STORE_EVENT,
        {
            "id": event.id,
            "type": event.type,
            "created": event.created,
            "livemode": event.livemode,
            "api_version": event.api_version,
            "account": event.account,
            "payload": event.payload,
        },
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def record_rejection(
    conn: AsyncConnection,
    *,
    reason: str,
    client_addr: str | None,
    body_size: int,
    body_sha256: str | None,
    excerpt: str | None,
) -> None:
    await conn.execute(
        RECORD_REJECTION,
        {
            "reason": reason,
            "client_addr": client_addr,
            "body_size": body_size,
            "body_sha256": body_sha256,
            "excerpt": excerpt,
        },
    )
