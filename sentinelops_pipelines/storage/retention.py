"""SQL that bounds what is kept only for a while."""

from __future__ import annotations

from datetime import timedelta

from psycopg import Connection

# In batches, each its own short transaction: a flood of rejections pruned at once must not
# hold one long DELETE (and its locks and WAL) against the webhook's inserts.
PRUNE_REJECTIONS = """
DELETE FROM webhook_rejections
 WHERE id IN (SELECT id FROM webhook_rejections
               WHERE received_at < now() - %(keep)s
               ORDER BY received_at LIMIT %(batch)s)
"""


def prune_rejections(conn: Connection, keep: timedelta, batch: int = 10_000) -> int:
    """Delete rejected webhook attempts older than `keep`; how many were deleted."""
    deleted = 0
    while True:
        with conn.transaction():
            count = conn.execute(PRUNE_REJECTIONS, {"keep": keep, "batch": batch}).rowcount
        deleted += count
        if count < batch:
            return deleted
