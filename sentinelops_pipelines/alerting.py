"""Jobs, schedule and sensors of the alerts and reporting groups, all on by default.

Delivery runs right after every successful run that may have opened or escalated an anomaly
(the rules, a backfill, reconciliation), so an alert reaches Slack within a minute of its
rules run. Failed runs of any job are posted to Slack through the same resource.
"""

import time

import dagster as dg

from sentinelops_pipelines.messages import failure_message
from sentinelops_pipelines.partitions import daily_partitions
from sentinelops_pipelines.slack import SlackResource

FAILURE_ATTEMPTS = 3
FAILURE_MAX_WAIT = 10.0  # seconds; a sensor tick must stay short

alerts_job = dg.define_asset_job(
    "alerts_job",
    selection=dg.AssetSelection.groups("alerts"),
    description="Post every due Slack notification once.",
)

daily_summary_job = dg.define_asset_job(
    "daily_summary_job",
    selection=dg.AssetSelection.groups("reporting"),
    partitions_def=daily_partitions,
    description="Build, store and post one day's operations summary.",
)

# 00:10 UTC for the day that just ended: its last window was evaluated at 00:01.
daily_summary_schedule = dg.build_schedule_from_partitioned_job(
    daily_summary_job,
    name="daily_summary_schedule",
    hour_of_day=0,
    minute_of_hour=10,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Summarise the previous UTC day shortly after midnight.",
)

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
def alerts_after_runs_sensor(context: dg.RunStatusSensorContext) -> dg.RunRequest | dg.SkipReason:
    run = context.dagster_run
    if not needs_delivery(context.instance, run.run_id):
        return dg.SkipReason(f"run {run.run_id} of {run.job_name} cannot have opened an anomaly")
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
        context.log.warning("SLACK_WEBHOOK_URL is unset; not posted: %s", text)
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
