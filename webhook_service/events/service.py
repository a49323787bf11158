"""Reading stored events and rejected webhook attempts, a keyset page at a time: shared by
GET /api/v1/events and the console's events pages, so both page and 404 the same way."""

from __future__ import annotations

from datetime import datetime

from psycopg_pool import AsyncConnectionPool

from webhook_service.errors import InvalidCursor, NotFound
from webhook_service.events import repository
from webhook_service.pagination import decode_cursor, split_page


async def page(
    pool: AsyncConnectionPool,
    *,
    type: str | None,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[dict], str | None]:
    """One page of events, newest first, and the cursor of the next (None on the last page).
    InvalidCursor if `cursor` is not one this service issued."""
    after = decode_cursor(cursor, (datetime, str)) if cursor else None
    async with pool.connection() as conn:
        rows = await repository.list_events(
            conn, type=type, since=since, until=until, after=after, limit=limit + 1
        )
    return split_page(rows, limit, lambda last: (last["created"], last["id"]))


async def detail(pool: AsyncConnectionPool, event_id: str) -> dict:
    """One event with its payload; NotFound if it never arrived."""
    async with pool.connection() as conn:
        row = await repository.get_event(conn, event_id)
    if row is None:
        raise NotFound(f"event {event_id} was never received")
    return row


async def rejections(
    pool: AsyncConnectionPool, cursor: str | None, limit: int
) -> tuple[list[dict], str | None]:
    """One page of rejected webhook attempts, newest first, and the cursor of the next."""
    (before,) = decode_cursor(cursor, (int,)) if cursor else (None,)
    if before is not None and not 0 < before < 2**63:  # a bigint, or PostgreSQL refuses it
        raise InvalidCursor("cursor is not one this service issued")
    async with pool.connection() as conn:
        rows = await repository.list_rejections(conn, before=before, limit=limit + 1)
    return split_page(rows, limit, lambda last: (last["id"],))
