"""Sensors: re-evaluate windows that received events after they were evaluated.

Stripe retries a failed delivery for up to three days and reconciliation backfills what the
webhook missed, so an evaluated window can gain events later. Each tick finds the windows whose
events arrived after their rollup was computed and requests one run per contiguous range.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg

from sentinelops_pipelines.jobs import rules_job
from sentinelops_pipelines.resources import PostgresResource

LATE_WINDOWS = """
SELECT DISTINCT m.window_start
  FROM stripe_events e
  JOIN window_metrics m
    ON m.window_start = date_bin('5 minutes', e.created, TIMESTAMPTZ '2000-01-01 00:00:00+00')
 WHERE e.received_at > %(cursor)s AND e.received_at <= %(until)s
   AND e.received_at > m.computed_at
 ORDER BY 1
"""
FIRST_LOOK_BACK = timedelta(hours=1)
KEY_FORMAT = "%Y-%m-%d-%H:%M"


def contiguous_ranges(starts: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Sorted window starts grouped into runs of adjacent 5-minute windows."""
    ranges: list[tuple[datetime, datetime]] = []
    for start in starts:
        if ranges and start - ranges[-1][1] == timedelta(minutes=5):
            ranges[-1] = (ranges[-1][0], start)
        else:
            ranges.append((start, start))
    return ranges


@dg.sensor(
    job=rules_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-evaluate 5-minute windows that received events after they were evaluated.",
)
def late_events_sensor(
    context: dg.SensorEvaluationContext, postgres: PostgresResource
) -> dg.SensorResult:
    with postgres.connect() as conn:
        until = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        cursor = (
            datetime.fromisoformat(context.cursor) if context.cursor else until - FIRST_LOOK_BACK
        )
        starts = [row[0] for row in conn.execute(LATE_WINDOWS, {"cursor": cursor, "until": until})]
    requests = []
    for first, last in contiguous_ranges([s.astimezone(UTC) for s in starts]):
        a, b = first.strftime(KEY_FORMAT), last.strftime(KEY_FORMAT)
        requests.append(
            dg.RunRequest(
                run_key=f"late:{a}...{b}:{until.isoformat()}",
                tags={
                    "dagster/asset_partition_range_start": a,
                    "dagster/asset_partition_range_end": b,
                    "sentinelops/reason": "late_events",
                },
            )
        )
    return dg.SensorResult(run_requests=requests, cursor=until.isoformat())
