"""SQL for the webhook: store an event once, count redeliveries, record rejections."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from psycopg import AsyncConnection

from webhook_service.stripe_webhooks.verify import VerifiedEvent

# One statement stores a batch (EventWriter's group commit, often of one event): a new id is
# inserted, a redelivery only counted, so 50 concurrent deliveries are one row with deliveries=50.
# Deliveries of one id within a batch are folded into one row first (ON CONFLICT may touch a row
# only once per statement). The batch travels as one JSON parameter, [{"d": deliveries,
# "e": event}, ...], spliced from the verified bodies: the statement text never changes, so it is
# parsed and prepared once, and psycopg adapts one string instead of 8 values per event (its
# per-parameter work was the largest cost of the multi-row VALUES form, benchmarks/ingest.py).
# verify() checked the envelope fields; a non-string api_version or account is stored as NULL.
STORE_EVENTS = """
INSERT INTO stripe_events
       (id, type, created, livemode, api_version, account, payload, deliveries)
SELECT b.e->>'id', b.e->>'type', to_timestamp((b.e->>'created')::bigint),
       (b.e->>'livemode')::boolean,
       CASE WHEN jsonb_typeof(b.e->'api_version') = 'string' THEN b.e->>'api_version' END,
       CASE WHEN jsonb_typeof(b.e->'account') = 'string' THEN b.e->>'account' END,
       b.e, b.d
  FROM jsonb_to_recordset(%s::jsonb) AS b(d integer, e jsonb)
ON CONFLICT (id) DO UPDATE
   SET deliveries = stripe_events.deliveries + EXCLUDED.deliveries, last_received_at = now()
RETURNING id, (xmax = 0) AS inserted
"""

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
    batch = ",".join(f'{{"d":{deliveries[i]},"e":{e.payload}}}' for i, e in first.items())
    cur = await conn.execute(STORE_EVENTS, (f"[{batch}]",))
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
