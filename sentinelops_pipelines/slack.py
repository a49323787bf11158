"""Slack through an incoming webhook, with slack_sdk's WebhookClient.

The webhook URL is a secret (whoever holds it can post to the channel): it is read from the
settings at run time, never shown in Dagster's resource config, and never logged or stored.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import dagster as dg
from slack_sdk.webhook import WebhookClient

from sentinelops.settings import get_settings

# slack_sdk logs the full URL at DEBUG and exception texts (which may quote it) at ERROR; its
# logger stays off and only our redacted outcome is reported.
_SDK_LOG = logging.getLogger("sentinelops.slack_sdk")
_SDK_LOG.setLevel(logging.CRITICAL)
_SDK_LOG.disabled = True
DEFAULT_RETRY_AFTER = 60.0
# Answers of an incoming webhook that no retry can fix. 400 (invalid_payload) is about one
# message; 403 (invalid_token, action_prohibited), 404 (no_service, channel_not_found) and 410
# (channel_is_archived) are about the webhook itself, so every other message would fail too.
PERMANENT_STATUSES = frozenset({400, 403, 404, 410})
REFUSED_STATUSES = frozenset({403, 404, 410})


@dataclass(frozen=True)
class PostResult:
    accepted: bool
    status: int | None = None  # None: no HTTP answer (timeout, refused connection)
    retry_after: float | None = None  # seconds, on 429
    # Short and secret-free; "HTTP <status>: <body>" for an HTTP answer (the outbox reads the
    # status back from a failed row's last_error).
    error: str | None = None

    @property
    def transient(self) -> bool:
        """Slack unreachable or failing: later messages would fail the same way now."""
        return self.status is None or self.status >= 500

    @property
    def permanent(self) -> bool:
        """An answer retrying cannot fix: the row fails after this one attempt."""
        return self.status in PERMANENT_STATUSES

    @property
    def refused(self) -> bool:
        """The webhook itself is gone or forbidden: nothing more can go to it."""
        return self.status in REFUSED_STATUSES


class SlackResource(dg.ConfigurableResource):
    """Slack incoming webhook. Unset `webhook_url`: SLACK_WEBHOOK_URL, read at run time.

    The delivery policy lives here too, so tests can shrink timeouts and backoff."""

    webhook_url: str | None = None
    timeout_seconds: float = 10.0
    retry_backoff_seconds: float = 30.0
    max_backoff_seconds: float = 3600.0
    # Longer than a post can take: a claimed row is retried only once its sender must be gone.
    lease_seconds: float = 120.0

    def _url(self) -> str | None:
        if self.webhook_url:
            return self.webhook_url
        secret = get_settings().slack_webhook_url
        return secret.get_secret_value() if secret else None

    @property
    def configured(self) -> bool:
        return bool(self._url())

    def fingerprint(self) -> str | None:
        """Which webhook is configured, without revealing it: failed rows keep this, so they
        are tried again once the setting changes. None when no webhook is set."""
        url = self._url()
        return hashlib.sha256(url.encode()).hexdigest()[:16] if url else None

    def backoff(self, attempts: int) -> float:
        """Exponential: base, 2x base, 4x base ... capped."""
        exponent = min(max(attempts - 1, 0), 20)
        return float(min(self.retry_backoff_seconds * 2**exponent, self.max_backoff_seconds))

    def post(self, text: str, blocks: list[dict] | None = None) -> PostResult:
        """One attempt; accepted only on a 2xx. Retries are the caller's, with backoff."""
        url = self._url()
        if not url:
            return PostResult(False, error="SLACK_WEBHOOK_URL is not set")
        client = WebhookClient(
            url,
            timeout=self.timeout_seconds,  # type: ignore[arg-type]
            logger=_SDK_LOG,
            retry_handlers=[],  # one attempt per claim; the outbox owns retries and backoff
        )
        try:
            response = client.send(text=text, blocks=blocks)
        except Exception as exc:  # timeouts, refused connections, DNS: all worth a retry
            return PostResult(False, error=redact(f"{type(exc).__name__}: {exc}", url))
        if 200 <= response.status_code < 300:
            return PostResult(True, status=response.status_code)
        retry_after = None
        if response.status_code == 429:
            retry_after = _seconds(response.headers.get("Retry-After"))
        body = redact(str(response.body or "")[:200], url)
        return PostResult(
            False, response.status_code, retry_after, f"HTTP {response.status_code}: {body}"
        )


def _seconds(value: object) -> float:
    if isinstance(value, list):  # urllib may give repeated headers as a list
        value = value[0] if value else None
    try:
        return max(float(str(value)), 0.0)
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER


def redact(text: str, url: str) -> str:
    """`text` without the webhook URL or its secret path."""
    segments = url.split("://", 1)[-1].split("/")[1:]
    # Every tail of the path, longest first: the last segment alone is the token.
    tails = ["/".join(segments[i:]) for i in range(len(segments))]
    for secret in (url, *tails):
        if len(secret) >= 8:
            text = text.replace(secret, "<slack-webhook>")
    return text
