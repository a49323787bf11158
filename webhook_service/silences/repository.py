"""SQL for the silence API: create, list, end early (releasing what it held)."""

from __future__ import annotations

from datetime import datetime

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from sentinelops.slack import silences

# The state is the database's view at the statement's now(), the clock silence_covering() and
# the outbox read, so the API never calls a silence active that the outbox treats as over.
STATE = (
    "CASE WHEN ends_at <= now() THEN 'expired' WHEN now() < starts_at THEN 'upcoming'"
    " ELSE 'active' END AS state"
)
COLUMNS = "id, rule, scope, starts_at, ends_at, reason, created_by, created_at, ended_by, " + STATE

INSERT = f"""
INSERT INTO silences (rule, scope, starts_at, ends_at, reason, created_by)
VALUES (%(rule)s, %(scope)s, coalesce(%(starts_at)s, now()), %(ends_at)s, %(reason)s, %(actor)s)
RETURNING {COLUMNS}
"""

# Active and upcoming first, the soonest started first; then expired, the latest ended first.
LIST = f"""
SELECT {COLUMNS} FROM silences
 ORDER BY ends_at <= now(), CASE WHEN ends_at > now() THEN starts_at END, ends_at DESC, id DESC
 LIMIT %(limit)s
"""

LOCK = f"SELECT {COLUMNS} FROM silences WHERE id = %(id)s FOR UPDATE"

END = f"""
UPDATE silences SET ends_at = now(), ended_by = %(actor)s WHERE id = %(id)s RETURNING {COLUMNS}
"""

# What the silence held is due at once: the outbox posts it on its next pass (or the nudge).
RELEASE = silences.RELEASE


async def insert(
    conn: AsyncConnection,
    *,
    rule: str | None,
    scope: str | None,
    starts_at: datetime | None,
    ends_at: datetime,
    reason: str,
    actor: str,
) -> dict:
    params = {
        "rule": rule,
        "scope": scope,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "reason": reason,
        "actor": actor,
    }
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(INSERT, params)
        row = await cur.fetchone()
    assert row is not None
    return row


async def list_silences(conn: AsyncConnection, limit: int) -> list[dict]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(LIST, {"limit": limit})
        return await cur.fetchall()


async def lock(conn: AsyncConnection, silence_id: int) -> dict | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(LOCK, {"id": silence_id})
        return await cur.fetchone()


async def end(conn: AsyncConnection, silence_id: int, actor: str) -> dict:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(END, {"id": silence_id, "actor": actor})
        row = await cur.fetchone()
    assert row is not None
    return row


async def release(conn: AsyncConnection, silence_id: int) -> list[int]:
    """Make the pending outbox rows of the anomalies it held due now; their anomaly ids."""
    cur = await conn.execute(RELEASE, {"id": silence_id})
    return sorted({int(row[0]) for row in await cur.fetchall()})
