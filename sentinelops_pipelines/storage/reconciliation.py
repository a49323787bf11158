"""SQL for reconciliation: store a listed page if absent, report the gap, keep the watermark."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from psycopg import Connection

from sentinelops.event_rows import INSERT_EVENTS, events_param
from sentinelops_pipelines.rules.gap import Gap, gap_title

# One statement per page. Stored exactly like a webhook event (sentinelops/event_rows.py), but
# deliveries = 0: the webhook never delivered it, and its ON CONFLICT counts the first real
# delivery as 1 and keeps the source. Existing rows are left untouched, so an event the webhook
# stored is never missing. Events created before `history_before` (first run only) are history,
# not missed: they are stored but not entered in reconciled_events, so no gap counts them.
STORE_PAGE = f"""
WITH stored AS ({INSERT_EVENTS}
    ON CONFLICT (id) DO NOTHING
    RETURNING id, created
),
missed AS (
    INSERT INTO reconciled_events (event_id)
    SELECT id FROM stored
     WHERE %(history_before)s::timestamptz IS NULL OR created >= %(history_before)s
    RETURNING event_id
)
SELECT (SELECT count(*) FROM missed), (SELECT count(*) FROM stored) - (SELECT count(*) FROM missed)
"""

# Where the webhook's coverage begins: Stripe sends an endpoint only events created after it was
# added, so the oldest event the webhook delivered marks it. No delivery yet: the run itself.
COVERAGE_START = """
SELECT coalesce(min(created), %(run_at)s) FROM stripe_events WHERE source = 'webhook'
"""

# Takes every event no complete run has reported yet (a run that died half-way left some),
# so each missing event is counted into exactly one gap.
TAKE_UNREPORTED = """
WITH taken AS (
    UPDATE reconciled_events SET reported_at = now() WHERE reported_at IS NULL
    RETURNING event_id
),
missing AS (
    SELECT e.id, e.type, e.created FROM taken t JOIN stripe_events e ON e.id = t.event_id
)
SELECT (SELECT count(*) FROM missing),
       (SELECT min(created) FROM missing),
       (SELECT max(created) FROM missing),
       (SELECT coalesce(jsonb_object_agg(type, n), '{}')
          FROM (SELECT type, count(*) AS n FROM missing GROUP BY type) t),
       (SELECT coalesce(array_agg(id ORDER BY created, id), '{}')
          FROM (SELECT id, created FROM missing ORDER BY created, id LIMIT %(samples)s) s)
"""

ADVANCE = """
INSERT INTO reconciliation_state AS s (listed_until, max_created, last_run_at)
VALUES (%(until)s, %(max_created)s, %(run_at)s)
ON CONFLICT (singleton) DO UPDATE
   SET listed_until = greatest(s.listed_until, EXCLUDED.listed_until),
       max_created = greatest(s.max_created, EXCLUDED.max_created),
       last_run_at = EXCLUDED.last_run_at
"""

# record() keeps an extended incident's first evidence; a gap that continues over several runs
# should show its totals, summed from the per-run rows of anomaly_windows.
INCIDENT_TOTALS = """
WITH w AS (SELECT evidence FROM anomaly_windows WHERE anomaly_id = %(id)s),
types AS (
    SELECT t.key, sum(t.value::int) AS n
      FROM w, jsonb_each_text(w.evidence->'missing_by_type') AS t GROUP BY t.key
)
UPDATE anomalies SET
       evidence = evidence || jsonb_build_object(
           'missing', (SELECT sum((w.evidence->>'missing')::int) FROM w),
           'missing_by_type', (SELECT jsonb_object_agg(types.key, types.n) FROM types),
           'first_created', (SELECT min(w.evidence->>'first_created') FROM w),
           'last_created', (SELECT max(w.evidence->>'last_created') FROM w)),
       updated_at = now()
 WHERE id = %(id)s
RETURNING (evidence->>'missing')::int, (evidence->>'first_created')::timestamptz,
          (evidence->>'last_created')::timestamptz
"""

SAMPLE_IDS = 10


def listed_until(conn: Connection) -> datetime | None:
    row = conn.execute("SELECT listed_until FROM reconciliation_state").fetchone()
    return row[0] if row else None


def coverage_start(conn: Connection, run_at: datetime) -> datetime:
    row = conn.execute(COVERAGE_START, {"run_at": run_at}).fetchone()
    return row[0] if row else run_at


def store_page(
    conn: Connection, events: list[dict[str, Any]], history_before: datetime | None
) -> tuple[int, int]:
    """Insert the page's events the database lacks: (missed by the webhook, older history)."""
    page = events_param((0, json.dumps(event)) for event in events)
    params = {"events": page, "source": "reconciliation", "history_before": history_before}
    missed, history = conn.execute(STORE_PAGE, params).fetchone()  # type: ignore[misc]
    return missed, history


def take_gap(conn: Connection) -> Gap | None:
    """The unreported stored events as one gap, now marked reported; None if there are none."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('reconciliation:gap', 0))")
    count, first, last, by_type, samples = conn.execute(  # type: ignore[misc]
        TAKE_UNREPORTED, {"samples": SAMPLE_IDS}
    ).fetchone()
    if not count:
        return None
    return Gap(count, by_type, first.astimezone(UTC), last.astimezone(UTC), list(samples))


def sum_incident(conn: Connection, anomaly_id: int) -> None:
    """Make an incident that several runs extended show its totals, in evidence and title."""
    missing, first, last = conn.execute(INCIDENT_TOTALS, {"id": anomaly_id}).fetchone()  # type: ignore[misc]
    conn.execute(
        "UPDATE anomalies SET title = %s WHERE id = %s",
        (gap_title(missing, first.astimezone(UTC), last.astimezone(UTC)), anomaly_id),
    )


def advance(conn: Connection, until: datetime, max_created: datetime | None, run_at: datetime):
    conn.execute(ADVANCE, {"until": until, "max_created": max_created, "run_at": run_at})
