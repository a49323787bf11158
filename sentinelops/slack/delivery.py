"""Posting the notification outbox to Slack: each row claimed, sent, then marked.

A row is marked sent only when Slack accepted it. Slack failing (5xx, timeout) backs the row
off exponentially and ends the pass, since the rest would fail the same way; a rate limit holds
every row until Retry-After has passed. An answer no retry can fix fails the row after that one
attempt; when it means the destination itself is gone (a revoked webhook or token, a channel
the app is not in), nothing more is posted to it, and each failed row is tried once more when
the setting changes. Alerts for an anomaly someone already acknowledged (or resolved) are not
posted (updates of a message already posted are), demo anomalies never go out.

The rows of one anomaly go out in order (the claim takes none while an older one is pending),
so a thread never tells a change before the message it belongs to exists.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import date
from typing import Any, Protocol

from psycopg import Connection

from sentinelops.slack import outbox
from sentinelops.slack.messages import outbox_message
from sentinelops.slack.result import Policy, PostResult

# Enough for any backlog; a rate limit ends the pass long before (Slack takes about one a second).
MAX_PER_RUN = 1000
ANNOUNCEMENTS = frozenset({"opened", "escalated"})
CHANGES = frozenset({"acknowledged", "resolved", "reopened"})


class Destination(Protocol):
    """Where the outbox goes: an incoming webhook or the Slack app (a bot in one channel)."""

    @property
    def policy(self) -> Policy: ...

    @property
    def refused_pattern(self) -> str:
        """Matches the last_error of a row the destination itself refused."""
        ...

    @property
    def channel_id(self) -> str | None:
        """The app's channel (its messages are kept per channel); None for a webhook."""
        ...

    def fingerprint(self) -> str: ...

    def skip_reason(self, row: dict) -> str | None: ...

    def send(self, conn: Connection, row: dict) -> PostResult: ...

    def post(self, text: str, blocks: list[dict] | None = None) -> PostResult: ...


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
    # Whether an alert still goes out for an anomaly someone acted on is the destination's
    # call: the app first looks for a post whose answer was lost, and updates it.
    return None


def deliver(
    conn: Connection,
    destination: Destination | None,
    log: Any = None,
    *,
    limit: int = MAX_PER_RUN,
    summary_date: date | None = None,
    anomaly_id: int | None = None,
) -> Counter[str]:
    """Post due notifications (only that day's summary when `summary_date` is given, only one
    anomaly's when `anomaly_id` is). `destination` None: Slack is not configured.

    `conn` must be in autocommit mode: each step is its own short transaction, and no
    transaction is open while Slack is called.
    """
    log = log or logging.getLogger(__name__)
    outcomes: Counter[str] = Counter()
    if destination is None:
        for waiting in outbox.unannounced(conn, limit, summary_date):
            text = describe(waiting) if waiting["kind"] in CHANGES else outbox_message(waiting)[0]
            log.warning(
                "Slack is not configured (SLACK_WEBHOOK_URL or SLACK_BOT_TOKEN); notification"
                " %s stays pending: %s",
                waiting["id"],
                text,
            )
            outcomes["logged"] += 1
        return outcomes
    fingerprint = destination.fingerprint()
    retried = outbox.retry_failed_for_new_target(conn, fingerprint)
    if retried:
        log.info(
            "the Slack destination changed: %d failed notification(s) tried once more", retried
        )
    if outbox.refused_by_target(conn, fingerprint, destination.refused_pattern):
        # Posting more would only collect more refusals; the rows stay pending, not lost.
        log.warning(
            "Slack refused this destination (see the failed notifications): nothing is posted "
            "until its setting is fixed"
        )
        outcomes["held"] += 1
        return outcomes
    policy = destination.policy
    for _ in range(limit):
        row = outbox.claim_next(
            conn, policy.lease_seconds, summary_date, anomaly_id, destination.channel_id
        )
        if row is None:
            break
        reason = skip_reason(row) or destination.skip_reason(row)
        result = None if reason else destination.send(conn, row)
        reason = reason or (result.skipped if result else None)
        if reason:
            outbox.mark_skipped(conn, row["id"], reason)
            log.info("notification %s skipped: %s", row["id"], reason)
            outcomes["skipped"] += 1
            continue
        assert result is not None
        if result.accepted:
            outbox.mark_sent(conn, row["id"])
            outcomes["sent"] += 1
            continue
        error = result.error or "not accepted"
        if result.permanent or result.refused:
            outbox.mark_failed(conn, row, error, fingerprint)
            outcomes["failed"] += 1
            if not result.refused:  # about this message only
                log.error("notification %s failed for good, not retried: %s", row["id"], error)
                continue
            log.error(
                "notification %s failed: Slack refused the destination (%s); nothing more is "
                "posted until its setting is fixed",
                row["id"],
                error,
            )
            break
        if result.rate_limited:
            delay = min(result.retry_after or 0.0, policy.max_backoff_seconds)
            outbox.defer_all(conn, delay)
            outbox.mark_retry(conn, row, delay, error)
            log.warning("Slack rate limit: nothing is posted for %.0f s", delay)
            outcomes["rate_limited"] += 1
            break
        delay = policy.backoff(row["attempts"])
        outbox.mark_retry(conn, row, delay, error)
        log.warning("notification %s not delivered (%s); retry in %.0f s", row["id"], error, delay)
        outcomes["retry_later"] += 1
        if result.transient:
            break
    return outcomes


def describe(row: dict) -> str:
    if row["anomaly_id"] is not None:
        return f"{row['kind']} of anomaly #{row['anomaly_id']}"
    if row["kind"] == "catch_up":
        return f"catch-up of {len(row.get('incidents') or [])} incidents"
    return f"daily summary of {row['summary_date']}"
