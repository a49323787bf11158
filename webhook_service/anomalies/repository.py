"""SQL for the anomaly API: filtered keyset pages, one anomaly with history, transitions."""

from __future__ import annotations

from datetime import datetime

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from sentinelops.slack import outbox

COLUMNS = sql.SQL(
    "id, rule, scope, severity, status, title, window_start, window_end, detected_at,"
    " updated_at, acknowledged_at, resolved_at, cleared_at, found_late, silenced_by, evidence"
)
RANK = sql.SQL("severity_rank(severity)")
UNRESOLVED = sql.SQL("(status <> 'resolved')::int")

# Each sort is a key (ordered by, and compared as a row for keyset paging) and a direction.
SORTS: dict[str, tuple[list[sql.Composable], str]] = {
    # The console's landing order: what still needs someone first, worst first, newest first.
    "attention": ([UNRESOLVED, RANK, sql.SQL("detected_at"), sql.SQL("id")], "DESC"),
    "severity_desc": ([RANK, sql.SQL("detected_at"), sql.SQL("id")], "DESC"),
    "detected_desc": ([sql.SQL("detected_at"), sql.SQL("id")], "DESC"),
    "detected_asc": ([sql.SQL("detected_at"), sql.SQL("id")], "ASC"),
}


async def list_anomalies(
    conn: AsyncConnection, *, filters: dict, sort: str, after: tuple | None, limit: int
) -> list[dict]:
    parts, direction = SORTS[sort]
    key = sql.SQL("({})").format(sql.SQL(", ").join(parts))
    where: list[sql.Composable] = [
        sql.SQL("(%(only_open)s IS NOT TRUE OR status <> 'resolved')"),
        sql.SQL("(%(status)s::text IS NULL OR status = %(status)s)"),
        sql.SQL("(%(severity)s::text IS NULL OR severity = %(severity)s)"),
        sql.SQL("(%(rule)s::text IS NULL OR rule = %(rule)s)"),
        sql.SQL("(%(demo_only)s IS NOT TRUE OR is_demo(evidence))"),
    ]
    params = dict(filters)
    if after is not None:
        placeholders = sql.SQL(", ").join(sql.Placeholder(f"k{i}") for i in range(len(after)))
        op = sql.SQL("<" if direction == "DESC" else ">")
        where.append(sql.SQL("{} {} ({})").format(key, op, placeholders))
        params.update({f"k{i}": value for i, value in enumerate(after)})
    order = sql.SQL(", ").join(sql.SQL("{} {}").format(p, sql.SQL(direction)) for p in parts)
    query = sql.SQL(
        "SELECT {cols}, {rank} AS severity_rank, {unresolved} AS unresolved FROM anomalies"
        " WHERE {where} ORDER BY {order} LIMIT {limit}"
    ).format(
        cols=COLUMNS,
        rank=RANK,
        unresolved=UNRESOLVED,
        where=sql.SQL(" AND ").join(where),
        order=order,
        limit=sql.Literal(limit),
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


def cursor_key(sort: str, row: dict) -> tuple:
    if sort == "attention":
        return (row["unresolved"], row["severity_rank"], row["detected_at"], row["id"])
    if sort == "severity_desc":
        return (row["severity_rank"], row["detected_at"], row["id"])
    return (row["detected_at"], row["id"])


def cursor_kinds(sort: str) -> tuple[type, ...]:
    kinds = {"attention": (int, int, datetime, int), "severity_desc": (int, datetime, int)}
    return kinds.get(sort, (datetime, int))


async def rules_seen(conn: AsyncConnection) -> list[str]:
    """Every rule that has raised an anomaly, for the console's filter."""
    cur = await conn.execute("SELECT DISTINCT rule FROM anomalies ORDER BY rule")
    return [row[0] for row in await cur.fetchall()]


async def get_anomaly(conn: AsyncConnection, anomaly_id: int, *, lock: bool = False) -> dict | None:
    query = sql.SQL("SELECT {} FROM anomalies WHERE id = %(id)s{}").format(
        COLUMNS, sql.SQL(" FOR UPDATE") if lock else sql.SQL("")
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, {"id": anomaly_id})
        return await cur.fetchone()


async def history(conn: AsyncConnection, anomaly_id: int) -> list[dict]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT from_status, to_status, at, actor, note FROM anomaly_history"
            " WHERE anomaly_id = %(id)s ORDER BY id",
            {"id": anomaly_id},
        )
        return await cur.fetchall()


# Going back to open clears the stamps of the states it leaves; each stamp is the latest time.
SET_STATUS = """
UPDATE anomalies
   SET status = %(to)s, updated_at = now(),
       acknowledged_at = CASE WHEN %(to)s = 'acknowledged' THEN now()
                              WHEN %(to)s = 'open' THEN NULL ELSE acknowledged_at END,
       resolved_at = CASE WHEN %(to)s = 'resolved' THEN now()
                          WHEN %(to)s = 'open' THEN NULL ELSE resolved_at END
 WHERE id = %(id)s
"""

ADD_HISTORY = """
INSERT INTO anomaly_history (anomaly_id, from_status, to_status, actor, note)
VALUES (%(id)s, %(from)s, %(to)s, %(actor)s, %(note)s)
RETURNING id
"""


async def set_status(
    conn: AsyncConnection, anomaly_id: int, current: str, target: str, actor: str, note: str | None
) -> int:
    """Apply the change, record it, and queue its Slack update: all in the caller's transaction,
    so the message never tells a change that was rolled back, nor misses one that committed
    (outbox.ENQUEUE_CHANGE queues only for anomalies that were announced). The history row's id."""
    await conn.execute(SET_STATUS, {"id": anomaly_id, "to": target})
    cur = await conn.execute(
        ADD_HISTORY,
        {"id": anomaly_id, "from": current, "to": target, "actor": actor, "note": note},
    )
    row = await cur.fetchone()
    assert row is not None
    await conn.execute(outbox.ENQUEUE_CHANGE, {"history_id": row[0]})
    return int(row[0])


async def latest_change(conn: AsyncConnection, anomaly_id: int) -> dict | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(outbox.LAST_CHANGE, {"id": anomaly_id})
        return await cur.fetchone()
