"""SQL for reading stored Stripe events and rejected webhook attempts."""

from __future__ import annotations

from datetime import datetime

from psycopg import AsyncConnection
from psycopg.rows import dict_row

COLUMNS = "id, type, created, received_at, livemode, source, deliveries, api_version, account"

# Newest first on (created, id); every filter is optional and the (created, id) and
# (type, created, id) indexes serve each combination.
LIST_EVENTS = f"""
SELECT {COLUMNS}
  FROM stripe_events
 WHERE (%(type)s::text IS NULL OR type = %(type)s)
   AND (%(since)s::timestamptz IS NULL OR created >= %(since)s)
   AND (%(until)s::timestamptz IS NULL OR created < %(until)s)
   AND (%(after_created)s::timestamptz IS NULL
        OR (created, id) < (%(after_created)s, %(after_id)s::text))
 ORDER BY created DESC, id DESC
 LIMIT %(limit)s
"""

GET_EVENT = f"SELECT {COLUMNS}, payload FROM stripe_events WHERE id = %(id)s"

# Newest first on the identity, which follows arrival; the excerpt is capped at 256 characters
# by the table itself, the body is never kept.
LIST_REJECTIONS = """
SELECT id, received_at, reason, client_addr, body_size, excerpt
  FROM webhook_rejections
 WHERE (%(before)s::bigint IS NULL OR id < %(before)s)
 ORDER BY id DESC
 LIMIT %(limit)s
"""


async def list_events(
    conn: AsyncConnection,
    *,
    type: str | None,
    since: datetime | None,
    until: datetime | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[dict]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            LIST_EVENTS,
            {
                "type": type,
                "since": since,
                "until": until,
                "after_created": after[0] if after else None,
                "after_id": after[1] if after else None,
                "limit": limit,
            },
        )
        return await cur.fetchall()


async def get_event(conn: AsyncConnection, event_id: str) -> dict | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(GET_EVENT, {"id": event_id})
        return await cur.fetchone()


async def list_rejections(conn: AsyncConnection, *, before: int | None, limit: int) -> list[dict]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(LIST_REJECTIONS, {"before": before, "limit": limit})
        return await cur.fetchall()
