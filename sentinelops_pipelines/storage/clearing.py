"""Clearing: an incident whose rule has not breached for a whole quiet gap gets `cleared_at`.

Decided on closed windows only, and only on windows the rules judged with every event they hold
(evaluated, and not rolled up again since): a window still open, never evaluated, or stale
(a late event arrived) keeps the incident uncleared until it is. Any breach in those windows
would have joined the incident and moved its end, so "no breach for the gap" is "every window of
the gap after its end judged". `cleared_at` is that end: when the condition stopped.

The status does not change: people still resolve. An incident that clears queues one 'cleared'
notice (its Slack message and thread, or one short webhook message) if its alert was posted or
is queued, saying what the deciding measure (the one its chart shows) read in the last window
of the gap: "failed payments in 5 min back to 0". One statement for any number of incidents
(benchmarks/clearing.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from psycopg import Connection

from sentinelops.slack.outbox import WAS_ANNOUNCED
from sentinelops.windows import STEP

GAP = f"greatest(%(gap)s, {STEP})"  # a gap of 0 still needs the next window judged

# The windows of the gap start at the incident's end (ends are 5-minute aligned). The conditions
# sit in the UPDATE's own WHERE, so a run that extended the incident meanwhile is seen when the
# row lock is granted (PostgreSQL re-checks them on the newer row). A window evaluated under the
# very snapshot it was rolled up with is fresh without asking snapshot_covers().
CLEAR = f"""
WITH cleared AS (
    UPDATE anomalies a SET cleared_at = a.window_end, updated_at = now()
     WHERE a.cleared_at IS NULL AND a.status <> 'resolved'
       AND a.window_end <= coalesce(%(now)s::timestamptz, now()) - {GAP}
       AND NOT EXISTS (
           SELECT FROM generate_series(a.window_end, a.window_end + {GAP} - {STEP}, {STEP})
                AS w(start)
             LEFT JOIN window_metrics m ON m.window_start = w.start
            WHERE m.evaluated_snapshot IS NULL
               OR NOT (m.evaluated_snapshot::text = m.rolled_snapshot::text
                       OR snapshot_covers(m.evaluated_snapshot, m.rolled_snapshot)))
    RETURNING a.*
),
queued AS (
    INSERT INTO notifications (channel, kind, anomaly_id, severity, dedupe_key, payload)
    SELECT 'slack', 'cleared', a.id, a.severity,
           'cleared:' || a.id || ':' || extract(epoch FROM a.cleared_at)::bigint,
           jsonb_strip_nulls(jsonb_build_object(
               'at', a.cleared_at, 'label', r.label, 'value', r.observed,
               'expected', r.expected, 'bound', r.bound, 'reading_window', r.window_start))
      FROM cleared a
      LEFT JOIN LATERAL (
           SELECT label, observed, expected, bound, window_start FROM rule_readings
            WHERE rule = a.rule AND scope = coalesce(a.evidence #>> '{{chart,scope}}', 'all')
              AND measure = a.evidence #>> '{{chart,measure}}'
              AND window_start >= a.cleared_at AND window_start < a.cleared_at + {GAP}
            ORDER BY window_start DESC LIMIT 1) r ON true
     WHERE {WAS_ANNOUNCED}
    ON CONFLICT (channel, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
)
SELECT id FROM cleared ORDER BY id
"""


def clear_quiet(conn: Connection, quiet_gap: timedelta, now: datetime | None = None) -> list[int]:
    """Mark every incident that has been quiet for `quiet_gap` as cleared, in the caller's
    transaction, with its notice queued; the ids cleared. `now` (the database's clock when
    None) says which windows are closed."""
    rows = conn.execute(CLEAR, {"gap": quiet_gap, "now": now}).fetchall()
    return [row[0] for row in rows]
