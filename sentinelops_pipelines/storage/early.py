"""Early breaches the closed window did not confirm: kept, marked, and said in their thread.

An early look (looks.py) judges a window on its first minutes. When that window closes, the
evaluation pass judges all of it: a breach it finds replaces the look's evidence (anomalies.py,
`confirmed`); a window it does not find breaching is marked here, in the same transaction. The
window stays counted in its incident, with its evidence and the look that found it, now under
`unconfirmed` with the closed window's reading; the incident says it too when its evidence was
that window's, and an announced incident gets one 'unconfirmed' notice in its thread. Nothing
is deleted: someone may already be looking at it, and a late event may still confirm it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from psycopg import Connection

from sentinelops.slack.outbox import WAS_ANNOUNCED

UNCONFIRMED = f"""
WITH marked AS (
    UPDATE anomaly_windows w
       SET evidence = (w.evidence - 'look') || jsonb_build_object('unconfirmed',
               jsonb_strip_nulls(jsonb_build_object(
                   'look', w.evidence -> 'look', 'closed_at', now(),
                   'label', r.label, 'value', r.observed, 'bound', r.bound)))
      FROM anomaly_windows o
      LEFT JOIN LATERAL (
           SELECT label, observed, bound FROM rule_readings
            WHERE rule = o.rule AND scope = o.scope AND window_start = o.window_start
              AND measure = o.evidence #>> '{{chart,measure}}') r ON true
     WHERE o.rule = w.rule AND o.scope = w.scope AND o.window_start = w.window_start
       AND w.window_start >= %(start)s AND w.window_start < %(end)s
       AND w.rule = ANY(%(rules)s) AND w.evidence ? 'look'
    RETURNING w.anomaly_id, w.window_start, w.evidence -> 'unconfirmed' AS unconfirmed
),
incident AS (
    UPDATE anomalies a
       SET evidence = a.evidence || jsonb_build_object('unconfirmed', m.unconfirmed),
           updated_at = now()
      FROM marked m
     WHERE a.id = m.anomaly_id AND (a.evidence ->> 'window_start')::timestamptz = m.window_start
),
queued AS (
    INSERT INTO notifications (channel, kind, anomaly_id, severity, dedupe_key, payload)
    SELECT 'slack', 'unconfirmed', a.id, a.severity,
           'unconfirmed:' || a.id || ':' || extract(epoch FROM m.window_start)::bigint,
           m.unconfirmed || jsonb_build_object('window_start', m.window_start)
      FROM marked m JOIN anomalies a ON a.id = m.anomaly_id
     WHERE {WAS_ANNOUNCED}
    ON CONFLICT (channel, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
)
SELECT anomaly_id FROM marked ORDER BY anomaly_id
"""


# No advisory lock is taken here: a look holds its window's rollup row until it commits, and
# the closed pass marks the window evaluated (waiting for that look) before this statement
# reads the rows; a look finding the window evaluated does nothing (looks.py).


def mark_unconfirmed(
    conn: Connection, start: datetime, end: datetime, rules: Sequence[str]
) -> list[int]:
    """Mark the early breaches of `rules` in the closed windows [start, end) that the pass just
    made did not confirm (call it after the pass recorded its findings and readings); the ids
    of their incidents."""
    params = {"start": start, "end": end, "rules": list(rules)}
    return [row[0] for row in conn.execute(UNCONFIRMED, params).fetchall()]
