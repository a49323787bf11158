"""Housekeeping: what SentinelOps keeps only for a while is pruned once a day."""

from datetime import timedelta

import dagster as dg

from sentinelops.settings import get_settings
from sentinelops_pipelines.resources import PostgresResource
from sentinelops_pipelines.storage import retention


@dg.op
def prune_webhook_rejections(context: dg.OpExecutionContext, postgres: PostgresResource) -> int:
    """Delete rejected webhook attempts older than SENTINELOPS_REJECTIONS_RETENTION_DAYS."""
    days = get_settings().rejections_retention_days
    with postgres.connect() as conn:
        conn.autocommit = True  # each batch commits on its own (retention.py)
        deleted = retention.prune_rejections(conn, timedelta(days=days))
    context.log.info("deleted %d webhook rejections older than %d days", deleted, days)
    context.add_output_metadata({"deleted": deleted, "retention_days": days})
    return deleted


@dg.job(description="Prune what is kept only for a while (rejected webhook attempts).")
def housekeeping_job() -> None:
    prune_webhook_rejections()


housekeeping_schedule = dg.ScheduleDefinition(
    job=housekeeping_job,
    cron_schedule="17 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Prune rejected webhook attempts past their retention, daily at 03:17 UTC.",
)
