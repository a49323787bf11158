"""SQL for the raw events' freshness: is traffic expected now, and when did the last arrive."""

from __future__ import annotations

from datetime import datetime

from psycopg import Connection

# Traffic "expected" = the mean events per 5-minute window in this hour of the week over the
# last four weeks.
FRESHNESS = """
WITH expected AS (
    SELECT sum(events)::float / nullif(count(*), 0) AS per_window
      FROM window_metrics
     WHERE date_trunc('hour', window_start) IN (
           SELECT date_trunc('hour', now()) - k * interval '7 days' FROM generate_series(1, 4) k)
)
SELECT (SELECT per_window FROM expected), (SELECT max(received_at) FROM stripe_events), now()
"""


def freshness(conn: Connection) -> tuple[float, datetime | None, datetime]:
    """(events per window expected at this hour of week, latest receipt or None, now)."""
    per_window, latest, now = conn.execute(FRESHNESS).fetchone()  # type: ignore[misc]
    return per_window or 0.0, latest, now
