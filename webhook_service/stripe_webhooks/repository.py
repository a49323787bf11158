"""SQL for the webhook: store an event once, count redeliveries, record rejections."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from psycopg import AsyncConnection

from sentinelops.event_rows import INSERT_EVENTS, events_param
from webhook_service.stripe_webhooks.verify import VerifiedEvent

# One statement stores a batch (EventWriter's group commit, often of one event): a new id is
# inserted, a redelivery only counted, so 50 concurrent deliveries are one row with deliveries=50.
# Deliveries of one id within a batch are folded into one row first (ON CONFLICT may touch a row
# only once per statement). The batch is spliced from the verified bodies into one JSON
# parameter (sentinelops/event_rows.py, which reconciliation's listings share).
STORE_EVENTS = (
    INSERT_EVENTS
    + """ON CONFLICT (id) DO UPDATE
   SET deliveries = stripe_events.deliveries + EXCLUDED.deliveries, last_received_at = now()
RETURNING id, (xmax = 0) AS inserted
"""
)

RECORD_REJECTION = """
INSERT INTO webhook_rejections (reason, client_addr, body_size, body_sha256, excerpt)
VALUES (%(reason)s, %(client_addr)s, %(body_size)s, %(body_sha256)s, %(excerpt)s)
"""


async def store_events(conn: AsyncConnection, events: Sequence[VerifiedEvent]) -> set[str]:
    """Store a batch in one statement; the ids that were new (the rest were redeliveries)."""
    first: dict[str, VerifiedEvent] = {}
    deliveries: Counter[str] = Counter()
    for event in events:
        first.setdefault(event.id, event)
        deliveries[event.id] += 1
    batch = events_param((deliveries[i], e.payload) for i, e in first.items())
    cur = await conn.execute(STORE_EVENTS, {"events": batch, "source": "webhook"})
    return {event_id for event_id, inserted in await cur.fetchall() if inserted}


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
