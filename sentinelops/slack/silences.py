"""The outbox side of silences (migration 0012): an announcement is held while a silence covers
its anomaly, and posted once when that silence ends.

A held row is not a failed attempt: its claim's attempt is given back when it is deferred, so a
silence of any length never brings a row near MAX_ATTEMPTS, and a row posted after one still
reads as a first attempt (no search of the channel for a post no earlier attempt made).
"""

from __future__ import annotations

from datetime import UTC, datetime

from psycopg import Connection

HELD = frozenset({"opened", "escalated", "recurred"})

# Read with the anomaly of each claimed row (outbox.ANOMALY): the silence covering it now, if
# any (silence_id, silence_ends_at), and the one it was recorded under, for the message's line.
DETAILS = """
       cur.id AS silence_id, cur.ends_at AS silence_ends_at,
       a.silenced_by, held.reason AS silence_reason,
       (SELECT max(sent_at) FROM notifications s
         WHERE s.anomaly_id = a.id AND s.kind IN ('opened', 'escalated') AND s.status = 'sent')
           AS announced_at
"""
JOINS = """
  LEFT JOIN LATERAL (SELECT id, ends_at FROM silences
                      WHERE id = silence_covering(a.rule, a.scope, now())) cur ON true
  LEFT JOIN silences held ON held.id = a.silenced_by
"""

# In outbox.DUE, for `older`, a pending row of the same anomaly as `n`: a change of a message
# already posted does not wait behind an announcement a silence holds (someone acknowledging
# the incident in Slack during a maintenance must see the message follow). Nothing else does:
# an anomaly's rows otherwise go out in order.
PASSES_HELD = """
    n.kind IN ('acknowledged', 'resolved', 'reopened', 'cleared', 'unconfirmed')
    AND older.kind IN ('opened', 'escalated', 'recurred')
    AND older.last_error LIKE 'silenced by #%%'
    AND EXISTS (SELECT FROM anomalies a WHERE a.id = n.anomaly_id
                   AND silence_covering(a.rule, a.scope, now()) IS NOT NULL)
    AND EXISTS (SELECT FROM notifications posted
                 WHERE posted.anomaly_id = n.anomaly_id AND posted.status = 'sent'
                   AND posted.kind IN ('opened', 'escalated'))
"""

# Due again when the silence ends (or at once, when the API ends it early and releases it);
# the claim's attempt is given back. The end is read under a share lock: a DELETE ending the
# silence meanwhile either commits first (its new end is read here) or waits for this mark
# (and then releases it). Fenced by the attempt number like MARK_RETRY; the text is
# held_error()'s, which RELEASE matches.
MARK_SILENCED = """
WITH s AS (SELECT id, greatest(ends_at, now()) AS until FROM silences WHERE id = %(silence)s
             FOR SHARE)
UPDATE notifications n
   SET next_attempt_at = s.until, attempts = n.attempts - 1,
       last_error = 'silenced by #' || s.id || ' until '
                    || to_char(s.until AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
  FROM s
 WHERE n.id = %(id)s AND n.status = 'pending' AND n.attempts = %(attempts)s
"""


# A silence ended early (DELETE /api/v1/silences/{id}): the rows it held are due at once. Held
# rows are known by the last_error held_error() wrote, which also finds an alert queued before
# the silence began or an anomaly recorded under another silence.
RELEASE = """
UPDATE notifications SET next_attempt_at = now()
 WHERE status = 'pending' AND next_attempt_at > now()
   AND last_error LIKE 'silenced by #' || %(id)s::bigint || ' until %%'
RETURNING anomaly_id
"""


def holding(row: dict) -> tuple[int, datetime] | None:
    """The silence (id, end) that holds this claimed row now; None when it goes out."""
    anomaly = row.get("anomaly")
    if row["kind"] not in HELD or not anomaly or anomaly.get("silence_id") is None:
        return None
    return int(anomaly["silence_id"]), anomaly["silence_ends_at"]


def held_error(silence_id: int, until: datetime) -> str:
    """The row's last_error while held: `silenced by #3 until 2026-03-02T06:00:00Z`."""
    return f"silenced by #{silence_id} until {until.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def mark_silenced(conn: Connection, row: dict, silence_id: int) -> None:
    """Hold the row until the silence ends, read under MARK_SILENCED's lock (not the end the
    claim saw: an early end may have committed since)."""
    with conn.transaction():
        params = {"id": row["id"], "attempts": row["attempts"], "silence": silence_id}
        conn.execute(MARK_SILENCED, params)


def superseded(row: dict) -> str | None:
    """Why an escalation of an incident found during a silence need not go out: the incident
    was announced after the escalation was queued (the post after the silence showed its
    current severity), so it would say it twice. Nor a return a silence held when the
    incident has cleared again since (its cleared notice went out meanwhile): "back" after
    "cleared" would tell the opposite of what is true."""
    anomaly = row.get("anomaly") or {}
    if row["kind"] == "recurred":
        cleared, back = anomaly.get("cleared_at"), (row.get("payload") or {}).get("at")
        if cleared is not None and back and cleared > datetime.fromisoformat(back):
            return "cleared again since it came back"
        return None
    announced = anomaly.get("announced_at")
    found_silenced = anomaly.get("silenced_by") is not None
    if (
        row["kind"] == "escalated"
        and found_silenced
        and announced
        and announced > row["created_at"]
    ):
        return "posted after the silence with its current severity"
    return None
