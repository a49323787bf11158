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


# A day of readings is a few thousand rows: usually one batch.
PRUNE_READINGS = """
DELETE FROM rule_readings
 WHERE ctid IN (SELECT ctid FROM rule_readings
                 WHERE window_start < now() - %(keep)s LIMIT %(batch)s)
"""


# A press is only ever redelivered within minutes (Slack's retries, a Socket Mode reconnect).
PRUNE_SLACK_INTERACTIONS = """
DELETE FROM slack_interactions
 WHERE ctid IN (SELECT ctid FROM slack_interactions
                 WHERE received_at < now() - %(keep)s LIMIT %(batch)s)
"""


def prune_rejections(conn: Connection, keep: timedelta, batch: int = 10_000) -> int:
    """Delete rejected webhook attempts older than `keep`; how many were deleted."""
    return _in_batches(conn, PRUNE_REJECTIONS, keep, batch)


def prune_readings(conn: Connection, keep: timedelta, batch: int = 10_000) -> int:
    """Delete the rules' readings of windows older than `keep`; how many were deleted."""
    return _in_batches(conn, PRUNE_READINGS, keep, batch)


def prune_slack_interactions(conn: Connection, keep: timedelta, batch: int = 10_000) -> int:
    """Delete the record of Slack button presses older than `keep`; how many were deleted."""
    return _in_batches(conn, PRUNE_SLACK_INTERACTIONS, keep, batch)


def _in_batches(conn: Connection, query: str, keep: timedelta, batch: int) -> int:
    deleted = 0
    while True:
        with conn.transaction():
            count = conn.execute(query, {"keep": keep, "batch": batch}).rowcount
        deleted += count
        if count < batch:
            return deleted
