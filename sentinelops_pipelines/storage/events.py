"""SQL about the stored Stripe events as a whole."""

from __future__ import annotations

from psycopg import Connection

# Enough to tell a copy of production (mostly live events) from a test stack, read through the
# (created, id) index so the check stays instant on a large table.
RECENT_LIVE_EVENTS = """
SELECT coalesce(bool_or(livemode), false) FROM (
    SELECT livemode FROM stripe_events ORDER BY created DESC, id DESC LIMIT 1000) AS recent
"""


def recent_live_events(conn: Connection) -> bool:
    """True when the latest 1,000 stored events include a live-mode one."""
    row = conn.execute(RECENT_LIVE_EVENTS).fetchone()
    return bool(row and row[0])
