"""Housekeeping: what SentinelOps keeps only for a while is pruned once a day."""

from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

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


@dg.op
def prune_rule_readings(context: dg.OpExecutionContext, postgres: PostgresResource) -> int:
    """Delete the rules' readings of windows older than SENTINELOPS_READINGS_RETENTION_DAYS."""
    days = get_settings().readings_retention_days
    with postgres.connect() as conn:
        conn.autocommit = True
        deleted = retention.prune_readings(conn, timedelta(days=days))
    context.log.info("deleted %d rule readings older than %d days", deleted, days)
    context.add_output_metadata({"deleted": deleted, "retention_days": days})
    return deleted


# A week keeps the recent presses for anyone asking who pressed what, and no more.
SLACK_INTERACTIONS_RETENTION = timedelta(days=7)


@dg.op
def prune_slack_interactions(context: dg.OpExecutionContext, postgres: PostgresResource) -> int:
    """Delete the record of Slack button presses older than 7 days (kept to apply each once)."""
    keep = SLACK_INTERACTIONS_RETENTION
    with postgres.connect() as conn:
        conn.autocommit = True  # each batch commits on its own (retention.py)
        deleted = retention.prune_slack_interactions(conn, keep)
    context.log.info("deleted %d Slack interactions older than %d days", deleted, keep.days)
    context.add_output_metadata({"deleted": deleted, "retention_days": keep.days})
    return deleted


# The early looks report one observation of `anomalies` a minute (open_window.py): a week of
# them (10,080) shows recent looks in the UI; older ones go, so the event log does not grow.
LOOK_OBSERVATIONS_RETENTION = timedelta(days=7)


@dg.op
def prune_look_observations(context: dg.OpExecutionContext) -> int:
    """Delete the early looks' observations of `anomalies` older than 7 days from Dagster's
    event log (Dagster has no retention setting for asset events; its SQL storage's table)."""
    storage = context.instance.event_log_storage
    if not isinstance(storage, SqlEventLogStorage):
        return 0
    table = SqlEventLogStorageTable
    cutoff = (datetime.now(UTC) - LOOK_OBSERVATIONS_RETENTION).replace(tzinfo=None)  # naive UTC
    with storage.index_connection() as conn:
        deleted = conn.execute(
            table.delete().where(
                table.c.dagster_event_type == dg.DagsterEventType.ASSET_OBSERVATION.value,
                table.c.asset_key == dg.AssetKey("anomalies").to_string(),
                table.c.timestamp < cutoff,
            )
        ).rowcount
    context.log.info("deleted %d early-look observations older than 7 days", deleted)
    context.add_output_metadata({"deleted": deleted, "retention_days": 7})
    return deleted
