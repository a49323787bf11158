"""SQL for the webhook: store an event once, count redeliveries, record rejections."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence

from psycopg import AsyncConnection

from webhook_service.stripe_webhooks.verify import VerifiedEvent

# One statement stores a batch (EventWriter's group commit, often of one event): a new id is
# inserted, a redelivery only counted, so 50 concurrent deliveries are one row with deliveries=50.
# Deliveries of one id within a batch are folded into one row first (ON CONFLICT may touch a row
# only once per statement). Plain VALUES rows, not unnest() over arrays: psycopg dumps scalars
# several times faster than lists, and each batch size is prepared once.
STORE_EVENTS = """
INSERT INTO stripe_events
       (id, type, created, livemode, api_version, account, payload, deliveries)
VALUES {rows}
ON CONFLICT (id) DO UPDATE
   SET deliveries = stripe_events.deliveries + EXCLUDED.deliveries, last_received_at = now()
RETURNING id, (xmax = 0) AS inserted
"""
ROW = "(%s, %s, to_timestamp(%s), %s, %s, %s, %s::jsonb, %s)"


@functools.lru_cache(maxsize=256)
def store_events_sql(count: int) -> str:
    return STORE_EVENTS.format(rows=", ".join([ROW] * count))


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
    params: list[object] = []
    for e in first.values():
        params += (e.id, e.type, e.created, e.livemode, e.api_version, e.account, e.payload)
        params.append(deliveries[e.id])
    cur = await conn.execute(store_events_sql(len(first)), params)
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
