"""SQL for the notification outbox: enqueue with the change that causes it, claim, mark.

A row is claimed in a short transaction that pushes `next_attempt_at` forward by a lease
(`FOR UPDATE SKIP LOCKED`, so two senders never take the same row); the post happens outside any
transaction; a second short transaction marks it sent or schedules the retry. A sender killed
between claim and mark leaves the row due again when its lease ends.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from psycopg import Connection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from sentinelops.slack import silences

Kind = Literal["opened", "escalated"]
NoticeKind = Literal["cleared", "recurred", "unconfirmed"]
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
ON CONFLICT (anomaly_id, channel, kind, severity)
   WHERE anomaly_id IS NOT NULL AND kind IN ('opened', 'escalated') DO NOTHING
"""

# Whether anomaly `a`'s alert was posted or is queued: an incident never announced (below the
# alert severity, in a catch-up message, a demo's) has no message to follow up.
WAS_ANNOUNCED = """
NOT is_demo(a.evidence)
AND EXISTS (SELECT FROM notifications n
             WHERE n.anomaly_id = a.id AND n.kind IN ('opened', 'escalated')
               AND n.status <> 'skipped')
"""

# A lifecycle change (acknowledged, resolved, reopened: one anomaly_history row), queued in the
# transaction that makes it, for anomalies that were announced: the app mode updates their
# message and tells the change in its thread. One row per history row, however often retried.
ENQUEUE_CHANGE = f"""
INSERT INTO notifications (channel, kind, anomaly_id, severity, dedupe_key, payload)
SELECT 'slack', CASE h.to_status WHEN 'open' THEN 'reopened' ELSE h.to_status END,
       a.id, a.severity, 'change:' || h.id,
       jsonb_build_object('history_id', h.id, 'from', h.from_status, 'to', h.to_status,
                          'actor', h.actor, 'note', h.note, 'at', h.at)
  FROM anomaly_history h JOIN anomalies a ON a.id = h.anomaly_id
 WHERE h.id = %(history_id)s AND {WAS_ANNOUNCED}
ON CONFLICT (channel, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
"""

# A notice about the condition itself ('cleared', 'recurred', 'unconfirmed') of an announced
# anomaly. Keyed by its kind and the moment it tells of, so a re-run queues nothing more.
ENQUEUE_NOTICE = f"""
INSERT INTO notifications (channel, kind, anomaly_id, severity, dedupe_key, payload)
SELECT 'slack', %(kind)s, a.id, a.severity, %(kind)s || ':' || a.id || ':' || %(key)s, %(payload)s
  FROM anomalies a
 WHERE a.id = %(id)s AND {WAS_ANNOUNCED}
ON CONFLICT (channel, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
"""

ENQUEUE_SUMMARY = """
INSERT INTO notifications (channel, kind, summary_date) VALUES ('slack', 'daily_summary', %(day)s)
ON CONFLICT (summary_date, channel) WHERE summary_date IS NOT NULL DO NOTHING
"""

# An anomaly's rows go out in order: none is due while an older one of it is pending (claimed
# by another sender or waiting for its retry), so a change never overtakes its message; only a
# change of a posted message passes an announcement a silence holds (silences.PASSES_HELD).
DUE = f"""
SELECT id FROM notifications n
 WHERE status = 'pending' AND next_attempt_at <= now()
   AND (%(day)s::date IS NULL OR summary_date = %(day)s)
   AND (%(anomaly)s::bigint IS NULL OR anomaly_id = %(anomaly)s)
   AND (anomaly_id IS NULL OR NOT EXISTS (
        SELECT FROM notifications older
         WHERE older.anomaly_id = n.anomaly_id AND older.status = 'pending' AND older.id < n.id
           AND NOT ({silences.PASSES_HELD})))
 ORDER BY next_attempt_at, id
 LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED
"""

CLAIM = f"""
WITH due AS ({DUE})
UPDATE notifications n
   SET attempts = n.attempts + 1, next_attempt_at = now() + make_interval(secs => %(lease)s)
  FROM due WHERE n.id = due.id
RETURNING n.id, n.kind, n.severity, n.anomaly_id, n.summary_date, n.attempts, n.payload,
          n.reply_ts, n.created_at, n.last_error
"""

ANOMALY = f"""
SELECT a.id, a.rule, a.scope, a.severity AS current_severity, a.status, a.title, a.window_start,
       a.window_end, a.cleared_at, a.evidence, is_demo(a.evidence) AS demo, {silences.DETAILS}
  FROM anomalies a {silences.JOINS}
 WHERE a.id = %(id)s
"""

# A catch-up message lists its incidents as they are when it is posted.
CAUGHT_UP = """
SELECT id, rule, severity, status, title, window_start, window_end
  FROM anomalies WHERE id IN (SELECT jsonb_array_elements_text(%(ids)s::jsonb)::bigint)
 ORDER BY window_start, id
"""

# An incident's latest change: who last changed it, on its message and in a late press's answer.
LAST_CHANGE = """
SELECT from_status AS "from", to_status AS "to", actor, note, at FROM anomaly_history
 WHERE anomaly_id = %(id)s ORDER BY id DESC LIMIT 1
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
RETURNING n.id, n.kind, n.severity, n.anomaly_id, n.summary_date, n.attempts, n.payload,
          n.reply_ts, n.created_at
"""

# Fenced by the attempt number like MARK_RETRY: a sender whose lease ran out does not mark a
# row another sender has claimed since (that one finds the post by its metadata, marks it).
MARK_SENT = """
WITH sent AS (
    UPDATE notifications SET status = 'sent', sent_at = now(), last_error = NULL
     WHERE id = %(id)s AND status = 'pending' AND attempts = %(attempts)s
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

# A refusal may be fixed inside Slack (the bot invited to its channel, a scope added, the app
# reactivated) while the setting, and so the fingerprint, stays the same: once the newest
# refusal of this destination is older than the cool-off, its refused rows go back to pending,
# due now, and the next post probes it. Refused again, a row fails again and holds for another
# cool-off; accepted, everything flows.
PROBE_REFUSED = """
UPDATE notifications
   SET status = 'pending', failed_at = NULL, target_fingerprint = NULL, next_attempt_at = now()
 WHERE status = 'failed' AND target_fingerprint = %(fingerprint)s AND last_error ~ %(pattern)s
   AND NOT EXISTS (
       SELECT FROM notifications recent
        WHERE recent.status = 'failed' AND recent.target_fingerprint = %(fingerprint)s
          AND recent.last_error ~ %(pattern)s
          AND recent.failed_at > now() - make_interval(secs => %(cool_off)s))
"""

# Whether this destination itself was refused: read back from last_error, which is
# PostResult.error ("HTTP <status>: ..." for a webhook, "Slack API: <code>" for the app).
REFUSED = """
SELECT EXISTS (
    SELECT FROM notifications
     WHERE status = 'failed' AND target_fingerprint = %(fingerprint)s
       AND last_error ~ %(pattern)s
)
"""

# The app mode's message of each anomaly, per channel: its ts is stored the moment Slack
# returns it, so no retry posts a second one.
MESSAGE_TS = """
SELECT ts FROM slack_messages WHERE anomaly_id = %(anomaly)s AND channel_id = %(channel)s
"""

STORE_MESSAGE = """
INSERT INTO slack_messages (anomaly_id, channel_id, ts) VALUES (%(anomaly)s, %(channel)s, %(ts)s)
ON CONFLICT (anomaly_id, channel_id) DO UPDATE SET ts = EXCLUDED.ts, posted_at = now()
"""

STORE_REPLY = """
UPDATE notifications SET reply_ts = %(ts)s WHERE id = %(id)s AND status = 'pending'
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


def enqueue_notice(
    conn: Connection, anomaly_id: int, kind: NoticeKind, *, key: str, payload: dict
) -> None:
    """Queue a 'cleared' or 'recurred' notice of an announced anomaly, once per `key`."""
    params = {"id": anomaly_id, "kind": kind, "key": key, "payload": Jsonb(payload)}
    conn.execute(ENQUEUE_NOTICE, params)


def enqueue_summary(conn: Connection, day: date) -> None:
    conn.execute(ENQUEUE_SUMMARY, {"day": day})


def _with_details(conn: Connection, rows: list[dict], channel: str | None = None) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        for row in rows:
            if row["anomaly_id"] is not None:
                row["anomaly"] = cur.execute(ANOMALY, {"id": row["anomaly_id"]}).fetchone()
                row["message_ts"] = (
                    message_ts(conn, row["anomaly_id"], channel) if channel else None
                )
            elif row["kind"] == "catch_up":
                ids = Jsonb(row["payload"]["anomaly_ids"])
                row["incidents"] = cur.execute(CAUGHT_UP, {"ids": ids}).fetchall()
            else:
                row["summary"] = cur.execute(SUMMARY, {"day": row["summary_date"]}).fetchone()
    return rows


def claim_next(
    conn: Connection, lease_seconds: float, day: date | None = None, anomaly_id: int | None = None
) -> dict | None:
    """The next due notification, leased to this sender; None if none. Committed before its
    details are read (`with_details`), so a row whose details fail still counts an attempt."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        params = {"lease": lease_seconds, "day": day, "anomaly": anomaly_id, "limit": 1}
        return cur.execute(CLAIM, params).fetchone()


def with_details(conn: Connection, row: dict, channel: str | None = None) -> dict:
    """The claimed row with what it is about (and, given the app's `channel`, the ts of its
    anomaly's message there)."""
    return _with_details(conn, [row], channel)[0]


def unannounced(conn: Connection, limit: int, day: date | None = None) -> list[dict]:
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        params = {"limit": limit, "day": day, "marker": NOT_CONFIGURED}
        rows = cur.execute(UNANNOUNCED, params).fetchall()
        return _with_details(conn, rows)


def mark_sent(conn: Connection, row: dict) -> None:
    with conn.transaction():
        conn.execute(MARK_SENT, {"id": row["id"], "attempts": row["attempts"]})


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


def probe_refused(conn: Connection, fingerprint: str, pattern: str, cool_off: float) -> int:
    """This destination's refused rows back to pending once its newest refusal is older than
    `cool_off` seconds; how many."""
    with conn.transaction():
        params = {"fingerprint": fingerprint, "pattern": pattern, "cool_off": cool_off}
        return conn.execute(PROBE_REFUSED, params).rowcount


def refused_by_target(conn: Connection, fingerprint: str, pattern: str) -> bool:
    """Whether a row failed on this destination with an error matching `pattern`."""
    row = conn.execute(REFUSED, {"fingerprint": fingerprint, "pattern": pattern}).fetchone()
    return bool(row and row[0])


def message_ts(conn: Connection, anomaly_id: int, channel: str) -> str | None:
    row = conn.execute(MESSAGE_TS, {"anomaly": anomaly_id, "channel": channel}).fetchone()
    return str(row[0]) if row else None


def store_message(conn: Connection, anomaly_id: int, channel: str, ts: str) -> None:
    with conn.transaction():
        conn.execute(STORE_MESSAGE, {"anomaly": anomaly_id, "channel": channel, "ts": ts})


def store_reply(conn: Connection, notification_id: int, ts: str) -> None:
    """The ts of what this row posted (a thread reply, a summary), kept before it is marked
    sent: a retry of the row finds it and posts nothing more."""
    with conn.transaction():
        conn.execute(STORE_REPLY, {"id": notification_id, "ts": ts})


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
