"""Clearing: an incident whose rule has not breached for a whole quiet gap gets `cleared_at`.

Decided on closed windows only, and only on windows the rules judged with every event they hold:
a window still open, never evaluated, or stale (a late event arrived, rolled up or not yet)
keeps the incident uncleared until it is. Only the rules the window pass judges clear this way:
a webhook_gap (reconciliation's) or a disabled rule's incident is never judged here. Any breach
in those windows would have joined the incident and moved its end, so "no breach for the gap"
is "every window of the gap after its end judged". `cleared_at` is that end: when the condition
stopped.

The status does not change: people still resolve. An incident that clears queues one 'cleared'
notice (its Slack message and thread, or one short webhook message) if its alert was posted or
is queued, saying what the deciding measure (the one its chart shows) read in the last window
of the gap: "failed payments in 5 min back to 0". One statement for any number of incidents
(benchmarks/clearing.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from psycopg import Connection

from sentinelops.coverage import UNEVALUATED_EVENT
from sentinelops.slack.outbox import WAS_ANNOUNCED
from sentinelops.windows import STEP, WINDOW

# The windows of the gap start at the incident's end (ends are 5-minute aligned). The conditions
# sit in the UPDATE's own WHERE, so a run that extended the incident meanwhile is seen when the
# row lock is granted (PostgreSQL re-checks them on the newer row). A window is judged with
# every event it holds when it was evaluated and no event of it is missing from that
# evaluation: the coverage scan's own test (a late delivery, an import; rolled up since or not).
CLEAR = f"""
WITH cleared AS (
    UPDATE anomalies a SET cleared_at = a.window_end, updated_at = now()
     WHERE a.cleared_at IS NULL AND a.status <> 'resolved' AND a.rule = ANY(%(rules)s)
       AND a.window_end <= coalesce(%(now)s::timestamptz, now()) - %(gap)s
       AND NOT EXISTS (
           SELECT FROM generate_series(a.window_end, a.window_end + %(gap)s - {STEP}, {STEP})
                AS w(start)
             LEFT JOIN window_metrics m ON m.window_start = w.start
            WHERE m.evaluated_snapshot IS NULL
               OR EXISTS (SELECT FROM stripe_events e
                           WHERE e.created >= w.start AND e.created < w.start + {STEP}
                             AND {UNEVALUATED_EVENT}))
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
              AND window_start >= a.cleared_at AND window_start < a.cleared_at + %(gap)s
            ORDER BY window_start DESC LIMIT 1) r ON true
     WHERE {WAS_ANNOUNCED}
    ON CONFLICT (channel, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
)
SELECT id FROM cleared ORDER BY id
"""


# The setting as it was, read before it is turned off for this transaction (left to right).
JIT_OFF = "SELECT current_setting('jit'), set_config('jit', 'off', true)"


def quiet_windows(quiet_gap: timedelta) -> timedelta:
    """The gap as whole windows, at least one: a breach in any window starting within the gap
    after an incident's end would join it (storage/anomalies.py), so each must be judged."""
    return WINDOW * max(1, math.ceil(quiet_gap / WINDOW))


def clear_quiet(
    conn: Connection, quiet_gap: timedelta, rules: Sequence[str], now: datetime | None = None
) -> list[int]:
    """Mark every incident of `rules` (those the window pass judges) that has been quiet for
    `quiet_gap` as cleared, in the caller's transaction, with its notice queued; the ids
    cleared. `now` (the database's clock when None) says which windows are closed."""
    params = {"gap": quiet_windows(quiet_gap), "rules": list(rules), "now": now}
    # Planned for every candidate's windows and their events, the statement looks costly enough
    # for PostgreSQL to JIT-compile it: ~0.9 s of compiling, on every pass, for what is a
    # millisecond's work when nothing clears (benchmarks/clearing.py). Off for it alone.
    was, _ = conn.execute(JIT_OFF).fetchone()  # type: ignore[misc]
    try:
        return [row[0] for row in conn.execute(CLEAR, params).fetchall()]
    finally:
        conn.execute("SELECT set_config('jit', %s, true)", (was,))
