"""SQL for the notification outbox: enqueue with the change that causes it, claim, mark.

A row is claimed in a short transaction that pushes `next_attempt_at` forward by a lease
(`FOR UPDATE SKIP LOCKED`, so two senders never take the same row); the post happens outside any
transaction; a second short transaction marks it sent or schedules the retry. A sender killed
between claim and mark leaves the row due again when its lease ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Literal

from psycopg import Connection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

Kind = Literal["opened", "escalated"]
NOT_CONFIGURED = "slack_not_configured"

# The policy, in SQL so it runs inside the transaction that opens or escalates: of the anomalies
# `opened` and `escalated`, every escalation and the openings at or above the minimum severity,
# never a demo anomaly. Alerts (ENQUEUE_ANOMALIES) and catch-up messages (catch_up.py) share it.
ANNOUNCEABLE = """
NOT is_demo(evidence)
AND (id = ANY(%(escalated)s)
     OR (id = ANY(%(opened)s)
         AND severity_rank(severity) >= severity_rank(%(min_severity)s::text)))
"""

# The unique key makes re-runs no-ops.
ENQUEUE_ANOMALIES = f"""
INSERT INTO notifications (channel, kind, anomaly_id, severity)
SELECT 'slack', CASE WHEN id = ANY(%(escalated)s) THEN 'escalated' ELSE 'opened' END,
       id, severity
  FROM anomalies WHERE {ANNOUNCEABLE}
ON CONFLICT (anomaly_id, channel, kind, severity) WHERE anomaly_id IS NOT NULL DO NOTHING
"""

ENQUEUE_SUMMARY = """
INSERT INTO notifications (channel, kind, summary_date) VALUES ('slack', 'daily_summary', %(day)s)
ON CONFLICT (summary_date, channel) WHERE summary_date IS NOT NULL DO NOTHING
"""

DUE = """
SELECT id FROM notifications
 WHERE status = 'pending' AND next_attempt_at <= now()
   AND (%(day)s::date IS NULL OR summary_date = %(day)s)
 ORDER BY next_attempt_at, id
 LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED
"""

CLAIM = f"""
WITH due AS ({DUE})
UPDATE notifications n
   SET attempts = n.attempts + 1, next_attempt_at = now() + make_interval(secs => %(lease)s)
  FROM due WHERE n.id = due.id
RETURNING n.id, n.kind, n.severity, n.anomaly_id, n.summary_date, n.attempts, n.payload
"""

ANOMALY = """
SELECT id, rule, scope, severity AS current_severity, status, title, window_start, window_end,
       evidence, is_demo(evidence) AS demo
  FROM anomalies WHERE id = %(id)s
"""

# A catch-up message lists its incidents as they are when it is posted.
CAUGHT_UP = """
SELECT id, rule, severity, status, title, window_start, window_end
  FROM anomalies WHERE id IN (SELECT jsonb_array_elements_text(%(ids)s::jsonb)::bigint)
 ORDER BY window_start, id
"""

SUMMARY = """
SELECT date, overall, highlights, watch, text, used_ai, model
  FROM daily_summaries WHERE date = %(day)s
"""

# Rows the log has not shown yet: without a webhook each pending alert is logged once, not on
# every run, and stays pending for the day a webhook is configured.
UNANNOUNCED = """
WITH due AS (
    SELECT id FROM notifications
     WHERE status = 'pending' AND last_error IS DISTINCT FROM %(marker)s
       AND (%(day)s::date IS NULL OR summary_date = %(day)s)
     ORDER BY id LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
)
UPDATE notifications n SET last_error = %(marker)s
  FROM due WHERE n.id = due.id
RETURNING n.id, n.kind, n.severity, n.anomaly_id, n.summary_date, n.attempts, n.payload
"""

MARK_SENT = """
WITH sent AS (
    UPDATE notifications SET status = 'sent', sent_at = now(), last_error = NULL
     WHERE id = %(id)s AND status = 'pending'
    RETURNING summary_date
)
UPDATE daily_summaries SET delivered_at = now()
 WHERE date = (SELECT summary_date FROM sent) AND delivered_at IS NULL
"""

# Fenced by the attempt number: a sender whose lease ran out must not undo a newer claim.
MARK_RETRY = """
UPDATE notifications
   SET next_attempt_at = now() + make_interval(secs => %(delay)s), last_error = %(error)s
 WHERE id = %(id)s AND status = 'pending' AND attempts = %(attempts)s
"""

# An answer no retry can fix. The row keeps a fingerprint of the webhook it failed on (never
# the URL); fenced like MARK_RETRY.
MARK_FAILED = """
UPDATE notifications
   SET status = 'failed', failed_at = now(), last_error = %(error)s,
       target_fingerprint = %(fingerprint)s
 WHERE id = %(id)s AND status = 'pending' AND attempts = %(attempts)s
"""

# Once per change of the webhook setting, each failed row is tried again; failing again, it
# fails with the new fingerprint and waits for the next change.
RETRY_FOR_NEW_TARGET = """
UPDATE notifications
   SET status = 'pending', failed_at = NULL, target_fingerprint = NULL, next_attempt_at = now()
 WHERE status = 'failed' AND target_fingerprint IS DISTINCT FROM %(fingerprint)s
"""

# Whether this webhook itself was refused: the status is read back from last_error, which is
# PostResult.error ("HTTP <status>: ...").
REFUSED = """
SELECT EXISTS (
    SELECT FROM notifications
     WHERE status = 'failed' AND target_fingerprint = %(fingerprint)s
       AND substring(last_error FROM '^HTTP ([0-9]{3})')::int = ANY(%(statuses)s::int[])
)
"""

NEWEST_FAILURE = """
SELECT id, kind, last_error, failed_at FROM notifications
 WHERE status = 'failed' ORDER BY failed_at DESC, id DESC LIMIT 1
"""

MARK_SKIPPED = """
UPDATE notifications SET status = 'skipped', last_error = %(reason)s
 WHERE id = %(id)s AND status = 'pending'
"""

# Slack's Retry-After is for the webhook, not one message: nothing goes out before it passes.
DEFER_ALL = """
UPDATE notifications
   SET next_attempt_at = greatest(next_attempt_at, now() + make_interval(secs => %(delay)s))
 WHERE status = 'pending'
"""


def enqueue_anomalies(
    conn: Connection, opened: list[int], escalated: list[int], min_severity: str
) -> None:
    """Queue the alerts of these openings and escalations the policy lets through."""
    params = {"opened": opened, "escalated": escalated, "min_severity": min_severity}
    conn.execute(ENQUEUE_ANOMALIES, params)


def enqueue_anomaly(conn: Connection, anomaly_id: int, kind: Kind, min_severity: str) -> None:
    opened, escalated = ([anomaly_id], []) if kind == "opened" else ([], [anomaly_id])
    enqueue_anomalies(conn, opened, escalated, min_severity)


def enqueue_summary(conn: Connection, day: date) -> None:
    conn.execute(ENQUEUE_SUMMARY, {"day": day})


def _with_details(conn: Connection, rows: list[dict]) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        for row in rows:
            if row["anomaly_id"] is not None:
                row["anomaly"] = cur.execute(ANOMALY, {"id": row["anomaly_id"]}).fetchone()
            elif row["kind"] == "catch_up":
                ids = Jsonb(row["payload"]["anomaly_ids"])
                row["incidents"] = cur.execute(CAUGHT_UP, {"ids": ids}).fetchall()
            else:
                row["summary"] = cur.execute(SUMMARY, {"day": row["summary_date"]}).fetchone()
    return rows


def claim_next(conn: Connection, lease_seconds: float, day: date | None = None) -> dict | None:
    """The next due notification with what it is about, leased to this sender; None if none."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        params = {"lease": lease_seconds, "day": day, "limit": 1}
        row = cur.execute(CLAIM, params).fetchone()
        return _with_details(conn, [row])[0] if row else None


def unannounced(conn: Connection, limit: int, day: date | None = None) -> list[dict]:
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        params = {"limit": limit, "day": day, "marker": NOT_CONFIGURED}
        rows = cur.execute(UNANNOUNCED, params).fetchall()
        return _with_details(conn, rows)


def mark_sent(conn: Connection, notification_id: int) -> None:
    with conn.transaction():
        conn.execute(MARK_SENT, {"id": notification_id})


def mark_retry(conn: Connection, row: dict, delay_seconds: float, error: str) -> None:
    with conn.transaction():
        conn.execute(
            MARK_RETRY,
            {"id": row["id"], "attempts": row["attempts"], "delay": delay_seconds, "error": error},
        )


def mark_failed(conn: Connection, row: dict, error: str, fingerprint: str) -> None:
    with conn.transaction():
        params = {"id": row["id"], "attempts": row["attempts"], "error": error}
        conn.execute(MARK_FAILED, {**params, "fingerprint": fingerprint})


def retry_failed_for_new_target(conn: Connection, fingerprint: str) -> int:
    """Failed rows that failed on another webhook go back to pending, due now; how many."""
    with conn.transaction():
        return conn.execute(RETRY_FOR_NEW_TARGET, {"fingerprint": fingerprint}).rowcount


def refused_by_webhook(conn: Connection, fingerprint: str, statuses: Iterable[int]) -> bool:
    """Whether a row failed on this webhook with one of `statuses`."""
    params = {"fingerprint": fingerprint, "statuses": sorted(statuses)}
    row = conn.execute(REFUSED, params).fetchone()
    return bool(row and row[0])


def mark_skipped(conn: Connection, notification_id: int, reason: str) -> None:
    with conn.transaction():
        conn.execute(MARK_SKIPPED, {"id": notification_id, "reason": reason})


def defer_all(conn: Connection, delay_seconds: float) -> None:
    with conn.transaction():
        conn.execute(DEFER_ALL, {"delay": delay_seconds})


def pending_count(conn: Connection) -> int:
    row = conn.execute("SELECT count(*) FROM notifications WHERE status = 'pending'").fetchone()
    return int(row[0]) if row else 0


def failed_count(conn: Connection) -> int:
    row = conn.execute("SELECT count(*) FROM notifications WHERE status = 'failed'").fetchone()
    return int(row[0]) if row else 0


def newest_failure(conn: Connection) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(NEWEST_FAILURE).fetchone()
