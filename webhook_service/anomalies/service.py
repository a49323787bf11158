"""Anomaly use cases: the transition runs on a locked row and writes its history row."""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from webhook_service.anomalies import repository
from webhook_service.anomalies.lifecycle import Status, check_transition
from webhook_service.errors import InvalidCursor, NotFound
from webhook_service.pagination import decode_cursor, split_page


async def page(
    pool: AsyncConnectionPool, filters: dict, sort: str, cursor: str | None, limit: int
) -> tuple[list[dict], str | None]:
    """One keyset page of anomalies and the cursor of the next (None on the last page)."""
    after = None
    if cursor:
        # A cursor carries its sort, so a cursor from another sort order is refused, not misread.
        decoded = decode_cursor(cursor, (str, *repository.cursor_kinds(sort)))
        if decoded[0] != sort:
            raise InvalidCursor(f"this cursor belongs to sort={decoded[0]}, not sort={sort}")
        after = decoded[1:]
    async with pool.connection() as conn:
        rows = await repository.list_anomalies(
            conn, filters=filters, sort=sort, after=after, limit=limit + 1
        )
    return split_page(rows, limit, lambda last: (sort, *repository.cursor_key(sort, last)))


async def detail(pool: AsyncConnectionPool, anomaly_id: int) -> dict:
    async with pool.connection() as conn:
        row = await repository.get_anomaly(conn, anomaly_id)
        if row is None:
            raise NotFound(f"anomaly {anomaly_id} does not exist")
        row["history"] = await repository.history(conn, anomaly_id)
    return row


async def transition(
    pool: AsyncConnectionPool, anomaly_id: int, target: Status, actor: str, note: str | None
) -> dict:
    """Move an anomaly to `target`; InvalidTransition (409) for a disallowed or no-op move.

    Its Slack update is queued in the same transaction (repository.set_status); the caller
    nudges delivery after answering (webhook_service/slack/nudge.py)."""
    async with pool.connection() as conn:
        async with conn.transaction():
            await apply(conn, anomaly_id, target, actor, note)
        row = await repository.get_anomaly(conn, anomaly_id)
        assert row is not None
        row["history"] = await repository.history(conn, anomaly_id)
    return row


async def apply(
    conn: AsyncConnection, anomaly_id: int, target: Status, actor: str, note: str | None
) -> Status:
    """The transition itself, inside the caller's transaction (the API's, the console's, a Slack
    press's, which records the press beside it): NotFound, InvalidTransition, or the status it
    moved from."""
    # The row lock makes concurrent changes queue, so each sees the status the previous one
    # left and the history stays a consistent chain.
    row = await repository.get_anomaly(conn, anomaly_id, lock=True)
    if row is None:
        raise NotFound(f"anomaly {anomaly_id} does not exist")
    current = Status(row["status"])
    check_transition(anomaly_id, current, target)
    await repository.set_status(conn, anomaly_id, current, target, actor, note)
    return current
