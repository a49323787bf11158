"""Schedules, all on by default, so `make run` watches without a click."""

from datetime import UTC, datetime

import dagster as dg

from sentinelops.windows import CRON, WINDOW, window_floor, window_key
from sentinelops_pipelines.jobs import (
    daily_summary_job,
    housekeeping_job,
    reconciliation_job,
    rules_job,
)
from sentinelops_pipelines.partitions import five_minute_partitions


def latest_complete_window(moment: datetime) -> datetime:
    return window_floor(moment) - WINDOW


@dg.schedule(
    job=rules_job,
    # As each window closes, so an alert follows its first event within about five and a half
    # minutes; events of the window still in flight then take the coverage sensor's path.
    cron_schedule=CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Evaluate the rules on each 5-minute window shortly after it closes.",
)
def rules_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    start = latest_complete_window(context.scheduled_execution_time.astimezone(UTC))
    key = window_key(start)
    # Compare with the start rather than list the keys: listing every 5-minute key since the
    # start costs seconds.
    if start < five_minute_partitions.start:
        return dg.SkipReason(f"window {key} is before the partitions start")
    return dg.RunRequest(run_key=key, partition_key=key)


# 00:10 UTC for the day that just ended: its last window was evaluated at 00:01.
daily_summary_schedule = dg.build_schedule_from_partitioned_job(
    daily_summary_job,
    name="daily_summary_schedule",
    hour_of_day=0,
    minute_of_hour=10,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Summarise the previous UTC day shortly after midnight.",
)

# Off the top of the hour, when Stripe traffic and other schedules peak.
reconciliation_schedule = dg.ScheduleDefinition(
    name="reconciliation_schedule",
    job=reconciliation_job,
    cron_schedule="23 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Reconcile with Stripe's Events API every hour.",
)

housekeeping_schedule = dg.ScheduleDefinition(
    job=housekeeping_job,
    cron_schedule="17 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Prune rejected webhook attempts past their retention, daily at 03:17 UTC.",
)
