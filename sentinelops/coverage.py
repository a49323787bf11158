"""Coverage of the 5-minute windows: which closed windows are not evaluated with all their events.

Shared by the pipelines (the coverage sensor acts on it) and the API (health reports it), so
both judge coverage with the same SQL. A window is covered when the rules evaluated a rollup
whose snapshot sees every event stored in it (migration 0005 says why visibility, not clocks).
A closed window is stale when it is not covered: never rolled up (downtime, a failed or killed
run, history imported by reconciliation), rolled up but not evaluated, or given events since.

Coverage starts at the window of the earliest stored event (never the partitions' start, so a
fresh install does not evaluate months of empty windows) and ends at the last closed window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from psycopg import Connection

from sentinelops.windows import BIN, STEP, WINDOW, window_floor

# Past this, the loop is behind: health says degraded, the evaluation_lag check fails.
LAG_LIMIT = timedelta(minutes=15)

# Event `e` is missing from the evaluation of its window `m` (a row of window_metrics, NULL
# when never rolled up): only events from the oldest one that may be (coverage_state's
# scanned_xid) on can be, a BRIN index scan of what arrived since. The coverage scan and the
# clearing of incidents (sentinelops_pipelines/storage/clearing.py) both ask it.
UNEVALUATED_EVENT = """
e.ingest_xid >= coalesce((SELECT scanned_xid FROM coverage_state), 0)
AND (m.evaluated_snapshot IS NULL
     OR NOT pg_visible_in_snapshot(e.ingest_xid::text::xid8, m.evaluated_snapshot))
"""

_UNEVALUATED = f"""
unevaluated AS (
    SELECT {BIN.format(col="e.created")} AS window_start, e.ingest_xid, e.received_at
      FROM stripe_events e
      LEFT JOIN window_metrics m ON m.window_start = {BIN.format(col="e.created")}
     WHERE e.created >= %(floor)s AND {UNEVALUATED_EVENT}
)"""

# One statement, so the stale windows, the frontier and the next scan start agree. The next
# scan start is the oldest unevaluated event's transaction, or else the oldest transaction
# still running: whatever commits later has a transaction id at least that.
SCAN = f"""
WITH {_UNEVALUATED},
first AS (
    SELECT {BIN.format(col="min(created)")} AS window_start
      FROM stripe_events WHERE created >= %(floor)s
),
missing AS (
    SELECT s.window_start
      FROM first,
           generate_series(first.window_start, %(closed_end)s - {STEP}, {STEP}) AS s(window_start)
     WHERE NOT EXISTS (SELECT 1 FROM window_metrics m
                        WHERE m.window_start = s.window_start
                          AND m.evaluated_snapshot IS NOT NULL)
),
-- since: when the window became stale, its close or the arrival of the event it lacks.
stale AS (
    SELECT window_start, min(since) AS since FROM (
        SELECT window_start, greatest(window_start + {STEP}, received_at) AS since
          FROM unevaluated WHERE window_start < %(closed_end)s
        UNION ALL
        SELECT window_start, window_start + {STEP} FROM missing
    ) AS both_kinds
    GROUP BY window_start
)
SELECT coalesce((SELECT array_agg(window_start ORDER BY window_start) FROM stale), '{{}}')
           AS stale_windows,
       (SELECT min(since) FROM stale) AS stale_since,
       (SELECT max(window_start) FROM window_metrics m
         WHERE m.evaluated_snapshot IS NOT NULL AND m.window_start < %(closed_end)s
           AND m.window_start >= (SELECT window_start FROM first)
           AND NOT EXISTS (SELECT 1 FROM stale s WHERE s.window_start = m.window_start))
           AS newest_covered,
       least((SELECT min(ingest_xid) FROM unevaluated),
             pg_snapshot_xmin(pg_current_snapshot())::text::bigint) AS next_scan_xid
"""

ADVANCE = """
INSERT INTO coverage_state (scanned_xid) VALUES (%(xid)s)
ON CONFLICT (singleton) DO UPDATE SET scanned_xid = EXCLUDED.scanned_xid, scanned_at = now()
 WHERE coverage_state.scanned_xid < EXCLUDED.scanned_xid
"""


@dataclass(frozen=True)
class Coverage:
    """What the loop has covered at `now`."""

    now: datetime
    stale_windows: list[datetime]  # closed windows not evaluated with all their events
    newest_covered: datetime | None  # start of the newest closed window that is covered
    stale_since: datetime | None = None  # since when the longest-waiting stale window waits
    next_scan_xid: int | None = None  # where the next scan starts (the sensor stores it)

    @property
    def oldest_stale(self) -> datetime | None:
        return self.stale_windows[0] if self.stale_windows else None

    @property
    def lag_seconds(self) -> float | None:
        """Now minus the end of the newest covered window; with nothing covered yet, minus the
        coverage start (how far behind the loop is). None: nothing to cover yet."""
        if self.newest_covered is not None:
            frontier = self.newest_covered + WINDOW
        elif self.stale_windows:
            frontier = self.stale_windows[0]
        else:
            return None
        return max((self.now - frontier).total_seconds(), 0.0)

    @property
    def stale_wait_seconds(self) -> float | None:
        """How long the longest-waiting stale window has waited: a window the loop should have
        covered within minutes, behind a covered newer one, shows here and not in the lag."""
        if self.stale_since is None:
            return None
        return max((self.now - self.stale_since).total_seconds(), 0.0)

    def behind(self, limit: timedelta = LAG_LIMIT) -> list[str]:
        """Why the loop is behind: the lag, or a stale window that has waited, over `limit`.
        The one judgement health and the evaluation_lag check both report."""
        found = []
        lag, wait = self.lag_seconds, self.stale_wait_seconds
        minutes = limit.total_seconds() / 60
        if lag is not None and lag > limit.total_seconds():
            found.append(f"evaluation lag {lag / 60:.0f} min, over {minutes:.0f} min")
        if wait is not None and wait > limit.total_seconds() and self.oldest_stale is not None:
            found.append(
                f"window {self.oldest_stale:%Y-%m-%d %H:%M} UTC not evaluated with all its"
                f" events for {wait / 60:.0f} min"
            )
        return found


def params(now: datetime, floor: datetime) -> dict[str, object]:
    return {"closed_end": window_floor(now), "floor": floor}


def from_row(now: datetime, row: tuple) -> Coverage:
    stale, since, newest, next_xid = row
    return Coverage(
        now=now,
        stale_windows=[w.astimezone(UTC) for w in stale],
        newest_covered=newest,
        stale_since=since,
        next_scan_xid=next_xid,
    )


def scan(conn: Connection, now: datetime, floor: datetime, *, advance: bool = False) -> Coverage:
    """The coverage at `now` of windows from `floor` on. With `advance`, the next scan starts at
    the oldest event not yet covered (the sensor does this; health only reads)."""
    row = conn.execute(SCAN, params(now, floor)).fetchone()
    assert row is not None
    coverage = from_row(now, row)
    if advance:
        conn.execute(ADVANCE, {"xid": coverage.next_scan_xid})
    return coverage
