"""Posting the notification outbox to Slack: each row claimed, sent, then marked.

A row is marked sent only when Slack accepted it. Slack failing (5xx, timeout) backs the row
off exponentially and ends the pass, since the rest would fail the same way; a rate limit holds
every row until Retry-After has passed. An answer no retry can fix fails the row after that one
attempt; when it means the destination itself is gone (a revoked webhook or token, a channel
the app is not in), nothing more is posted to it, and each failed row is tried once more when
the setting changes; since a refusal can also be fixed inside Slack (the bot invited, a scope
added), the refused rows go back to pending once the last refusal is a cool-off old, and the
first row claimed tries the destination again. A row that cannot even be sent (an error of
ours: bad data in a builder, a database error) is retried with backoff and fails after
MAX_ATTEMPTS; the rows after it go on. Alerts for an anomaly someone already acknowledged (or
resolved) are not posted (updates of a message already posted are), demo anomalies never go
out. An alert whose anomaly a silence covers waits until the silence ends (silences.py), then
goes out once, unless someone acted on the anomaly meanwhile.

The rows of one anomaly go out in order (the claim takes none while an older one is pending),
so a thread never tells a change before the message it belongs to exists.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import date
from typing import Any, Protocol

from psycopg import Connection

from sentinelops.slack import outbox, silences
from sentinelops.slack.messages import outbox_message
from sentinelops.slack.result import Policy, PostResult

# Enough for any backlog; a rate limit ends the pass long before (Slack takes about one a second).
MAX_PER_RUN = 1000
# Attempts at a row whose sending raises (not Slack's answer, an error of ours) before it fails.
MAX_ATTEMPTS = 8
ANNOUNCEMENTS = frozenset({"opened", "escalated"})
CHANGES = frozenset({"acknowledged", "resolved", "reopened"})
# About the condition itself: it cleared, came back, or an early breach was not confirmed
# (storage/clearing.py, anomalies.py, early.py).
NOTICES = frozenset({"cleared", "recurred", "unconfirmed"})


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
    recover: bool = True,
) -> Counter[str]:
    """Post due notifications (only that day's summary when `summary_date` is given, only one
    anomaly's when `anomaly_id` is). `destination` None: Slack is not configured. `recover`
    False: failed rows are left alone (no retry for a changed setting, no probe of a refusal),
    for callers that deliver a few rows on the side (the API after a press, the demo) with
    settings that may not be the stack's.

    `conn` must be in autocommit mode: each step is its own short transaction, and no
    transaction is open while Slack is called.
    """
    log = log or logging.getLogger(__name__)
    outcomes: Counter[str] = Counter()
    if destination is None:
        for waiting in outbox.unannounced(conn, limit, summary_date):
            quiet = waiting["kind"] in CHANGES | NOTICES
            text = describe(waiting) if quiet else outbox_message(waiting)[0]
            log.warning(
                "Slack is not configured (SLACK_WEBHOOK_URL or SLACK_BOT_TOKEN); notification"
                " %s stays pending: %s",
                waiting["id"],
                text,
            )
            outcomes["logged"] += 1
        return outcomes
    fingerprint = destination.fingerprint()
    retried = outbox.retry_failed_for_new_target(conn, fingerprint) if recover else 0
    if retried:
        log.info(
            "the Slack destination changed: %d failed notification(s) tried once more", retried
        )
    policy = destination.policy
    probed = 0
    if recover:
        probed = outbox.probe_refused(
            conn, fingerprint, destination.refused_pattern, policy.refused_probe_seconds
        )
    if probed:
        log.info(
            "Slack refused this destination %.0f s ago or more: %d notification(s) pending "
            "again, the next post tries whether it was fixed in Slack",
            policy.refused_probe_seconds,
            probed,
        )
    if outbox.refused_by_target(conn, fingerprint, destination.refused_pattern):
        # Posting more would only collect more refusals; the rows stay pending, not lost.
        log.warning(
            "Slack refused this destination (see the failed notifications): nothing is posted "
            "until its setting is fixed (or it is tried again after %.0f s)",
            policy.refused_probe_seconds,
        )
        outcomes["held"] += 1
        return outcomes
    for _ in range(limit):
        row = outbox.claim_next(conn, policy.lease_seconds, summary_date, anomaly_id)
        if row is None:
            break
        try:
            row = outbox.with_details(conn, row, destination.channel_id)
            reason = skip_reason(row) or silences.superseded(row) or destination.skip_reason(row)
            held = None if reason else silences.holding(row)
            result = None if reason or held else destination.send(conn, row)
        except Exception as exc:  # ours, not Slack's answer: this row only, the rest go on
            error = _short(exc)
            if row["attempts"] >= MAX_ATTEMPTS:
                outbox.mark_failed(conn, row, error, fingerprint)
                log.error(
                    "notification %s failed after %d attempts, not retried: %s",
                    row["id"],
                    row["attempts"],
                    error,
                )
                outcomes["failed"] += 1
                continue
            delay = policy.backoff(row["attempts"])
            outbox.mark_retry(conn, row, delay, error)
            log.error(
                "notification %s could not be sent (%s); retry in %.0f s", row["id"], error, delay
            )
            outcomes["retry_later"] += 1
            continue
        if held:
            silences.mark_silenced(conn, row, held[0])
            log.info("notification %s held: %s", row["id"], silences.held_error(*held))
            outcomes["silenced"] += 1
            continue
        reason = reason or (result.skipped if result else None)
        if reason:
            outbox.mark_skipped(conn, row["id"], reason)
            log.info("notification %s skipped: %s", row["id"], reason)
            outcomes["skipped"] += 1
            continue
        assert result is not None
        if result.accepted:
            outbox.mark_sent(conn, row)
            outcomes["sent"] += 1
            continue
        error = result.error or "not accepted"
        if result.permanent or result.refused:
            outbox.mark_failed(conn, row, error, fingerprint)
            outcomes["failed"] += 1
            if not result.refused:  # about this message only
                log.error("notification %s failed for good, not retried: %s", row["id"], error)
                if result.transient:  # an answer not known to be about one message
                    break
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


def _short(exc: Exception) -> str:
    """The exception's type and the first line of its message, cut short (a psycopg error's
    detail can quote row data)."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text[:200]


def describe(row: dict) -> str:
    if row["anomaly_id"] is not None:
        return f"{row['kind']} of anomaly #{row['anomaly_id']}"
    if row["kind"] == "catch_up":
        return f"catch-up of {len(row.get('incidents') or [])} incidents"
    return f"daily summary of {row['summary_date']}"
