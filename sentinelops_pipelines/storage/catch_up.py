"""Announcing what a rules run found: news alone, old incidents together.

An incident whose window ended more than `late_after` before the run found it (a catch-up
after downtime, history imported by reconciliation, a Stripe retry days late) is not news: it
is recorded as usual, marked `found_late`, and the run's late incidents are listed in one
catch-up message. Everything newer is announced one by one, as `record()` would have.

Lateness is judged once the run has written all its windows, on each incident's final window:
a catch-up that opens an incident hours ago and extends it to the last closed window is
announced as news, since it is still going on.
"""

from __future__ import annotations

from datetime import timedelta

from psycopg import Connection

from sentinelops.slack import outbox as notifications

# Of the run's incidents, those found late; the openings among them are marked.
MARK_LATE = """
UPDATE anomalies SET found_late = found_late OR id = ANY(%(opened)s)
 WHERE id = ANY(%(ids)s) AND window_end < now() - %(late_after)s
RETURNING id, silence_covering(rule, scope, now()) IS NOT NULL AS silenced
"""

# One message per set of incidents: re-running a range finds nothing new and queues nothing.
ENQUEUE_CATCH_UP = f"""
INSERT INTO notifications (channel, kind, payload, dedupe_key)
SELECT 'slack', 'catch_up', jsonb_build_object('anomaly_ids', jsonb_agg(id ORDER BY id)),
       'catch_up:' || md5(string_agg(id || ':' || severity, ',' ORDER BY id))
  FROM anomalies WHERE {notifications.ANNOUNCEABLE}
HAVING count(*) > 0
ON CONFLICT (channel, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
"""


def announce(
    conn: Connection,
    announced: list[tuple[int, str]],
    min_severity: str,
    late_after: timedelta,
) -> int:
    """Queue the notifications of a run's openings and escalations; how many incidents were
    found late."""
    opened = sorted({i for i, kind in announced if kind == "opened"})
    escalated = sorted({i for i, kind in announced if kind == "escalated"} - set(opened))
    params = {"opened": opened, "ids": opened + escalated, "late_after": late_after}
    # A late incident a silence covers is queued like news, so the silence holds it and it is
    # posted once when the silence ends; a catch-up message is never held.
    late = {row[0] for row in conn.execute(MARK_LATE, params) if not row[1]}
    notifications.enqueue_anomalies(
        conn, [i for i in opened if i not in late], [i for i in escalated if i not in late],
        min_severity,
    )  # fmt: skip
    if late:
        old = {"opened": [i for i in opened if i in late],
               "escalated": [i for i in escalated if i in late]}  # fmt: skip
        conn.execute(ENQUEUE_CATCH_UP, {**old, "min_severity": min_severity})
    return len(late)
