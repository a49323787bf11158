"""Sensors, all on by default: coverage, the evaluation lag, alert delivery, failed runs.

The coverage sensor: every closed 5-minute window evaluated with all its events.

`rules_schedule` evaluates each window as it closes. Everything else that leaves a window
unevaluated or evaluated without some of its events takes this one path: ticks missed while the
stack was down (a plain schedule re-runs only the last one), failed or killed runs, events that
arrive late (Stripe retries for three days), history imported by reconciliation. Each tick asks
the database which closed windows are stale (sentinelops/coverage.py) and requests one range
run over the oldest cluster of them, so a day of downtime is caught up in one run, not 288,
and the schedule's next tick runs beside it.

Delivery runs right after every successful run that may have opened or escalated an anomaly
(the rules, a backfill, reconciliation), so an alert reaches Slack within a minute of its
rules run. Failed runs of any job are posted to Slack through the same resource.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from sentinelops.slack import outbox
from sentinelops.slack.messages import failure_message
from sentinelops.windows import WINDOW, window_floor, window_key
from sentinelops_pipelines.assets.rules import REASON_TAG
from sentinelops_pipelines.checks import evaluation_lag, evaluation_lag_result, scan_coverage
from sentinelops_pipelines.jobs import alerts_job, rules_job
from sentinelops_pipelines.resources import PostgresResource
from sentinelops_pipelines.slack import SlackResource

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
    first, last = (window_key(w) for w in planned)
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
    key = evaluation_lag.check_key
    evaluation = dg.AssetCheckEvaluation(
        asset_key=key.asset_key,
        check_name=key.name,
        passed=lag.passed,
        metadata=lag.metadata,
        severity=lag.severity,
    )
    cursor = json.dumps({"passed": lag.passed, "reported_at": now.isoformat()})
    return dg.SensorResult(asset_events=[evaluation], cursor=cursor)


FAILURE_ATTEMPTS = 3
FAILURE_MAX_WAIT = 10.0  # seconds; a sensor tick must stay short

# Materializing only these cannot open an anomaly (the summary posts its own notification).
OWN_ASSETS = frozenset({dg.AssetKey("slack_notifications"), dg.AssetKey("daily_summary")})
SAMPLE = 100  # materializations looked at per run; a rules range run lists its rollups first


def needs_delivery(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether the run materialized anything that may have queued an alert: judged by what it
    materialized, not by job names, so backfills and ad-hoc runs count too."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=SAMPLE
    ).records
    keys = {
        r.event_log_entry.dagster_event.asset_key
        for r in records
        if r.event_log_entry.dagster_event is not None
    }
    return bool(keys - OWN_ASSETS)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    request_job=alerts_job,
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Deliver Slack notifications right after each successful rules run.",
)
def alerts_after_runs_sensor(
    context: dg.RunStatusSensorContext, postgres: PostgresResource
) -> dg.RunRequest | dg.SkipReason:
    run = context.dagster_run
    if not needs_delivery(context.instance, run.run_id):
        return dg.SkipReason(f"run {run.run_id} of {run.job_name} cannot have opened an anomaly")
    # Nothing to post (a quiet window, the usual case): no delivery run, whose worker process
    # costs seconds of CPU every 5 minutes. The run's notifications are committed before it
    # succeeds, so they are seen here.
    with postgres.connect() as conn:
        if outbox.pending_count(conn) == 0:
            return dg.SkipReason(f"run {run.run_id} of {run.job_name} left nothing to post")
    return dg.RunRequest(run_key=f"after:{run.run_id}")


@dg.run_failure_sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Post every failed pipeline run to Slack.",
)
def pipeline_failure_sensor(context: dg.RunFailureSensorContext, slack: SlackResource) -> None:
    run = context.dagster_run
    error = context.failure_event.message or "no error message"
    text, blocks = failure_message(run.job_name, run.run_id, error)
    if not slack.configured:
        context.log.warning("Slack is not configured; not posted: %s", text)
        return
    # A failure notice has no outbox row (the database may be what failed), so it gets a few
    # quick attempts here; the run itself stays failed in the Dagster UI either way.
    for attempt in range(1, FAILURE_ATTEMPTS + 1):
        result = slack.post(text, blocks)
        if result.accepted:
            return
        if attempt < FAILURE_ATTEMPTS:
            time.sleep(min(result.retry_after or slack.backoff(attempt), FAILURE_MAX_WAIT))
    context.log.error("Slack did not accept the failure notice of run %s: %s", run.run_id,
                      result.error)  # fmt: skip
