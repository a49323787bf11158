"""SQL for reading stored daily summaries."""

from __future__ import annotations

from datetime import date

from psycopg import AsyncConnection
from psycopg.rows import dict_row

GET_SUMMARY = """
SELECT date, overall, highlights, watch, text, used_ai, ai_error, delivered_at
  FROM daily_summaries WHERE date = %(day)s
"""


async def get_daily(conn: AsyncConnection, day: date) -> dict | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(GET_SUMMARY, {"day": day})
        return await cur.fetchone()
