"""Posting the notification outbox to Slack: each row claimed, posted, then marked.

A row is marked sent only when Slack answered 2xx. Slack failing (5xx, timeout) backs the row
off exponentially and ends the pass, since the rest would fail the same way; a 429 holds every
row until Retry-After has passed. An answer no retry can fix (400/403/404/410) fails the row
after that one attempt; a 403/404/410 means the webhook itself is gone, so nothing more is
posted to it, and each failed row is tried once more when the webhook setting changes. Alerts
for an anomaly someone already acknowledged (or resolved) are skipped at send time, demo
anomalies never go out.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import date
from typing import Any

from psycopg import Connection

from sentinelops_pipelines.messages import anomaly_alert, catch_up_message, summary_message
from sentinelops_pipelines.slack import REFUSED_STATUSES, SlackResource
from sentinelops_pipelines.storage import notifications as outbox

# Enough for any backlog; a 429 ends the pass long before (Slack takes about one a second).
MAX_PER_RUN = 1000


def render(row: dict) -> tuple[str, list[dict]]:
    if row["kind"] == "catch_up":
        return catch_up_message(row["incidents"])
    return summary_message(row["summary"]) if row.get("summary") else anomaly_alert(row)


def skip_reason(row: dict) -> str | None:
    anomaly = row.get("anomaly")
    if row["kind"] == "daily_summary":
        return None if row.get("summary") else "summary deleted"
    if row["kind"] == "catch_up":
        return None if row.get("incidents") else "anomalies deleted"
    if anomaly is None:
        return "anomaly deleted"
    if anomaly["demo"]:
        return "demo anomaly"
    if anomaly["status"] in ("acknowledged", "resolved"):
        return f"anomaly {anomaly['status']} before the alert went out"
    return None


def deliver(
    conn: Connection,
    slack: SlackResource,
    log: Any = None,
    *,
    limit: int = MAX_PER_RUN,
    summary_date: date | None = None,
) -> Counter[str]:
    """Post due notifications (only that day's summary when `summary_date` is given).

    `conn` must be in autocommit mode: each step is its own short transaction, and no
    transaction is open while Slack is called.
    """
    log = log or logging.getLogger(__name__)
    outcomes: Counter[str] = Counter()
    fingerprint = slack.fingerprint()
    if fingerprint is None:  # no webhook configured
        for waiting in outbox.unannounced(conn, limit, summary_date):
            text, _ = render(waiting)
            log.warning(
                "SLACK_WEBHOOK_URL is unset; notification %s stays pending: %s", waiting["id"], text
            )
            outcomes["logged"] += 1
        return outcomes
    retried = outbox.retry_failed_for_new_target(conn, fingerprint)
    if retried:
        log.info("the Slack webhook changed: %d failed notification(s) tried once more", retried)
    if outbox.refused_by_webhook(conn, fingerprint, REFUSED_STATUSES):
        # Posting more would only collect more refusals; the rows stay pending, not lost.
        log.warning(
            "Slack refused this webhook (see the failed notifications): nothing is posted "
            "until SLACK_WEBHOOK_URL is fixed"
        )
        outcomes["held"] += 1
        return outcomes
    for _ in range(limit):
        row = outbox.claim_next(conn, slack.lease_seconds, summary_date)
        if row is None:
            break
        reason = skip_reason(row)
        if reason:
            outbox.mark_skipped(conn, row["id"], reason)
            log.info("notification %s skipped: %s", row["id"], reason)
            outcomes["skipped"] += 1
            continue
        text, blocks = render(row)
        result = slack.post(text, blocks)
        if result.accepted:
            outbox.mark_sent(conn, row["id"])
            outcomes["sent"] += 1
            continue
        error = result.error or "not accepted"
        if result.permanent:
            outbox.mark_failed(conn, row, error, fingerprint)
            outcomes["failed"] += 1
            if not result.refused:  # about this message only
                log.error("notification %s failed for good, not retried: %s", row["id"], error)
                continue
            log.error(
                "notification %s failed: Slack refused the webhook (%s); nothing more is posted "
                "until SLACK_WEBHOOK_URL is fixed",
                row["id"],
                error,
            )
            break
        if result.status == 429:
            delay = min(result.retry_after or 0.0, slack.max_backoff_seconds)
            outbox.defer_all(conn, delay)
            outbox.mark_retry(conn, row, delay, error)
            log.warning("Slack rate limit: nothing is posted for %.0f s", delay)
            outcomes["rate_limited"] += 1
            break
        delay = slack.backoff(row["attempts"])
        outbox.mark_retry(conn, row, delay, error)
        log.warning("notification %s not delivered (%s); retry in %.0f s", row["id"], error, delay)
        outcomes["retry_later"] += 1
        if result.transient:
            break
    return outcomes
