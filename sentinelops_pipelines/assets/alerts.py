"""Alert delivery: the notification outbox posted to Slack, each notification once."""

import dagster as dg

from sentinelops.slack import outbox
from sentinelops.slack.delivery import deliver
from sentinelops_pipelines.assets.rules import anomalies
from sentinelops_pipelines.resources import PostgresResource
from sentinelops_pipelines.slack import SlackResource


@dg.asset(group_name="alerts", deps=[anomalies], kinds={"postgres", "slack"})
def slack_notifications(
    context: dg.AssetExecutionContext, postgres: PostgresResource, slack: SlackResource
) -> dg.MaterializeResult:
    """Pending Slack notifications (anomaly alerts, undelivered daily summaries) posted once
    each: marked sent only when Slack accepts, retried with backoff otherwise, failed when no
    retry can fix Slack's answer."""
    destination = slack.destination()
    with postgres.connect() as conn:
        conn.autocommit = True  # each claim and mark is its own short transaction
        outcomes = deliver(conn, destination, context.log)
        pending = outbox.pending_count(conn)
        failed_total = outbox.failed_count(conn)
    return dg.MaterializeResult(
        metadata={
            "slack_configured": destination is not None,
            "slack_mode": type(destination).__name__ if destination else "none",
            "sent": outcomes["sent"],
            "skipped": outcomes["skipped"],
            "retry_later": outcomes["retry_later"],
            "rate_limited": outcomes["rate_limited"],
            "failed": outcomes["failed"],
            "silenced": outcomes["silenced"],
            "failed_total": failed_total,
            "held_webhook_refused": bool(outcomes["held"]),
            "logged_without_webhook": outcomes["logged"],
            "still_pending": pending,
        }
    )
