"""Slack through an incoming webhook, with slack_sdk's WebhookClient: the simple mode.

The webhook URL is a secret (whoever holds it can post to the channel): it is never logged,
stored or shown; failed rows keep a fingerprint of it instead. An incoming webhook can only
post, so the lifecycle changes the app mode threads under its message are skipped here; that
the condition cleared, or came back, is one short message each.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from psycopg import Connection
from slack_sdk.webhook import WebhookClient

from sentinelops.slack.delivery import ANNOUNCEMENTS, CHANGES, NOTICES
from sentinelops.slack.incident import notice_message
from sentinelops.slack.messages import outbox_message
from sentinelops.slack.result import SDK_LOG, Policy, PostResult, seconds

# Answers of an incoming webhook that no retry can fix. 400 (invalid_payload) is about one
# message; 403 (invalid_token, action_prohibited), 404 (no_service, channel_not_found) and 410
# (channel_is_archived) are about the webhook itself, so every other message would fail too.
PERMANENT_STATUSES = frozenset({400, 403, 404, 410})
REFUSED_STATUSES = frozenset({403, 404, 410})


def http_result(status: int, error: str, retry_after: float | None = None) -> PostResult:
    """An HTTP answer that was not 2xx, classified."""
    return PostResult(
        False,
        error=error,
        status=status,
        retry_after=retry_after if status == 429 else None,
        permanent=status in PERMANENT_STATUSES,
        refused=status in REFUSED_STATUSES,
        transient=status >= 500,
    )


@dataclass(frozen=True)
class IncomingWebhook:
    url: str
    policy: Policy
    console_url: str | None = None
    channel_id: str | None = None  # an incoming webhook's channel is fixed and unknown
    # Failed rows whose last_error matches were refused by this destination itself.
    refused_pattern: str = "^HTTP (" + "|".join(str(s) for s in sorted(REFUSED_STATUSES)) + ")"

    def fingerprint(self) -> str:
        """Which webhook is configured, without revealing it."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]

    def skip_reason(self, row: dict) -> str | None:
        if row["kind"] in CHANGES:
            return "the incoming webhook cannot update a message (set SLACK_BOT_TOKEN)"
        anomaly = row.get("anomaly")
        if anomaly and row["kind"] in ANNOUNCEMENTS and anomaly["status"] != "open":
            return f"anomaly {anomaly['status']} before the alert went out"
        if anomaly and row["kind"] in NOTICES:
            if anomaly.get("announced_at") is None:  # its alert failed, or was skipped
                return "its alert never went out"
            if anomaly["status"] == "resolved":
                return "anomaly resolved before the notice went out"
        return None

    def send(self, conn: Connection, row: dict) -> PostResult:
        if row["kind"] in NOTICES:
            return self.post(*notice_message(row, self.console_url))
        return self.post(*outbox_message(row, self.console_url))

    def post(self, text: str, blocks: list[dict] | None = None) -> PostResult:
        """One attempt; accepted only on a 2xx. Retries are the outbox's, with backoff."""
        client = WebhookClient(
            self.url,
            timeout=self.policy.timeout_seconds,  # type: ignore[arg-type]
            logger=SDK_LOG,
            retry_handlers=[],  # one attempt per claim; the outbox owns retries and backoff
        )
        try:
            response = client.send(text=text, blocks=blocks)
        except Exception as exc:  # timeouts, refused connections, DNS: all worth a retry
            return PostResult(
                False, error=redact(f"{type(exc).__name__}: {exc}", self.url), transient=True
            )
        if 200 <= response.status_code < 300:
            return PostResult(True, status=response.status_code)
        retry_after = None
        if response.status_code == 429:
            retry_after = seconds(response.headers.get("Retry-After"))
        body = redact(str(response.body or "")[:200], self.url)
        return http_result(
            response.status_code, f"HTTP {response.status_code}: {body}", retry_after
        )


def redact(text: str, url: str) -> str:
    """`text` without the webhook URL or its secret path."""
    segments = url.split("://", 1)[-1].split("/")[1:]
    # Every tail of the path, longest first: the last segment alone is the token.
    tails = ["/".join(segments[i:]) for i in range(len(segments))]
    for secret in (url, *tails):
        if len(secret) >= 8:
            text = text.replace(secret, "<slack-webhook>")
    return text
