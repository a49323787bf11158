"""Schedules: on by default, so `make run` watches without a click."""

from datetime import UTC, datetime

import dagster as dg

from sentinelops.windows import WINDOW, window_floor
from sentinelops_pipelines.jobs import rules_job
from sentinelops_pipelines.partitions import five_minute_partitions

# As each window closes, so an alert follows its first event within about five and a half
# minutes; events of the window still in flight then take the coverage sensor's path.
RULES_CRON = "*/5 * * * *"


def latest_complete_window(moment: datetime) -> datetime:
    return window_floor(moment) - WINDOW


@dg.schedule(
    job=rules_job,
    cron_schedule=RULES_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Evaluate the rules on each 5-minute window shortly after it closes.",
)
def rules_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    start = latest_complete_window(context.scheduled_execution_time.astimezone(UTC))
    key = start.strftime("%Y-%m-%d-%H:%M")
    # Compare with the start rather than list the keys: listing every 5-minute key since the
    # start costs seconds.
    if start < five_minute_partitions.start:
        return dg.SkipReason(f"window {key} is before the partitions start")
    return dg.RunRequest(run_key=key, partition_key=key)
