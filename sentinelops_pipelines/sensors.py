"""The coverage sensor: every closed 5-minute window evaluated with all its events.

`rules_schedule` evaluates each window as it closes. Everything else that leaves a window
unevaluated or evaluated without some of its events takes this one path: ticks missed while the
stack was down (a plain schedule re-runs only the last one), failed or killed runs, events that
arrive late (Stripe retries for three days), history imported by reconciliation. Each tick asks
the database which closed windows are stale (sentinelops/coverage.py) and requests one range
run over the oldest cluster of them, so a day of downtime is caught up in one run, not 288,
and the schedule's next tick runs beside it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg

from sentinelops.windows import WINDOW, window_floor
from sentinelops_pipelines.checks import evaluation_lag_result, scan_coverage
from sentinelops_pipelines.jobs import rules_job
from sentinelops_pipelines.resources import PostgresResource

KEY_FORMAT = "%Y-%m-%d-%H:%M"
REASON_TAG = "sentinelops/reason"
# A just-closed window is the schedule's for this long; the sensor takes it after.
SCHEDULE_GRACE = timedelta(minutes=2)
# A window's 30-minute sums include the five before it: a stale window changes those after it.
NEIGHBOURS = timedelta(minutes=25)
# Stale windows closer than this share a run (re-evaluating the covered ones between costs less
# than another run); farther apart, the older cluster goes first.
CLUSTER_GAP = timedelta(hours=2)
# Run monitoring fails a coverage run stuck longer than this (a worker killed with the stack).
MAX_RUNTIME = timedelta(hours=1)
# The lag check is reported when it changes, and at least this often while it holds.
REPORT_EVERY = timedelta(minutes=15)
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def plan_range(stale: list[datetime], now: datetime) -> tuple[datetime, datetime] | None:
    """First and last window start of the next range run: the oldest cluster of stale windows
    due (no two more than CLUSTER_GAP apart), so a run costs what is stale, not the months
    between a late event and today; the next clusters go in the next ticks."""
    last_closed = window_floor(now) - WINDOW
    due = [w for w in stale if w + WINDOW + SCHEDULE_GRACE <= now]
    if not due:
        return None
    end = due[0]
    for window in due[1:]:
        if window - end > CLUSTER_GAP:
            break
        end = window
    return due[0], min(end + NEIGHBOURS, last_closed)


def _coverage_run_in_flight(instance: dg.DagsterInstance, now: datetime) -> str | None:
    records = instance.get_run_records(
        dg.RunsFilter(job_name=rules_job.name, statuses=IN_FLIGHT, tags={REASON_TAG: "coverage"}),
        limit=1,
    )
    for record in records:
        if record.create_timestamp.astimezone(UTC) > now - MAX_RUNTIME:
            return record.dagster_run.run_id
    return None


def _lag_report(cursor: str | None, passed: bool, now: datetime) -> bool:
    """Whether to report the lag check now: when it changed, or REPORT_EVERY after the last."""
    last = json.loads(cursor) if cursor else {}
    if last.get("passed") != passed:
        return True
    reported = datetime.fromisoformat(last.get("reported_at", "2000-01-01T00:00:00+00:00"))
    return now - reported >= REPORT_EVERY


@dg.sensor(
    job=rules_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluate every closed 5-minute window the schedule missed or that has events "
    "its evaluation lacks (downtime, failed runs, late deliveries, imported history).",
)
def coverage_sensor(
    context: dg.SensorEvaluationContext, postgres: PostgresResource
) -> dg.SensorResult:
    state = scan_coverage(postgres, advance=True)
    now = state.now
    planned = plan_range(state.stale_windows, now)
    if planned is None:
        return dg.SensorResult(skip_reason="every closed window is covered")
    running = _coverage_run_in_flight(context.instance, now)
    if running:
        return dg.SensorResult(skip_reason=f"coverage run {running} is still going")
    first, last = (w.strftime(KEY_FORMAT) for w in planned)
    context.log.info(
        "%d stale windows (oldest %s); one run over %s...%s",
        len(state.stale_windows), first, first, last,
    )  # fmt: skip
    request = dg.RunRequest(
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
            REASON_TAG: "coverage",
            "dagster/max_runtime": str(int(MAX_RUNTIME.total_seconds())),
        },
    )
    return dg.SensorResult(run_requests=[request])


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Report the evaluation_lag check, so the UI shows it red even when no run can "
    "start (kept apart from coverage_sensor: a failed report never holds back a run).",
)
def evaluation_lag_sensor(
    context: dg.SensorEvaluationContext, postgres: PostgresResource
) -> dg.SensorResult:
    state = scan_coverage(postgres)
    now = state.now
    lag = evaluation_lag_result(state)
    if not _lag_report(context.cursor, lag.passed, now):
        return dg.SensorResult(
            skip_reason=f"evaluation_lag still {'passing' if lag.passed else 'failing'}"
        )
    evaluation = dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey("anomalies"),
        check_name="evaluation_lag",
        passed=lag.passed,
        metadata=lag.metadata,
        severity=dg.AssetCheckSeverity.ERROR,
    )
    cursor = json.dumps({"passed": lag.passed, "reported_at": now.isoformat()})
    return dg.SensorResult(asset_events=[evaluation], cursor=cursor)
