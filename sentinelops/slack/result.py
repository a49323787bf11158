"""What one attempt at Slack came to, and the delivery policy (timeouts, backoff, lease)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

# slack_sdk logs full URLs (a webhook's secret path) at DEBUG and exception texts at ERROR;
# its logger stays off and only our redacted outcome is reported.
SDK_LOG = logging.getLogger("sentinelops.slack_sdk")
SDK_LOG.setLevel(logging.CRITICAL)
SDK_LOG.disabled = True
DEFAULT_RETRY_AFTER = 60.0


@dataclass(frozen=True)
class Policy:
    timeout_seconds: float = 10.0
    retry_backoff_seconds: float = 30.0
    max_backoff_seconds: float = 3600.0
    # Longer than a post can take: a claimed row is retried only once its sender must be gone.
    lease_seconds: float = 120.0
    # A refusal can be fixed inside Slack (the bot invited, a scope added) without any setting
    # changing: this long after the last refusal, the held destination is tried once more.
    refused_probe_seconds: float = 900.0

    def backoff(self, attempts: int) -> float:
        """Exponential: base, 2x base, 4x base ... capped."""
        exponent = min(max(attempts - 1, 0), 20)
        return float(min(self.retry_backoff_seconds * 2**exponent, self.max_backoff_seconds))


@dataclass(frozen=True)
class PostResult:
    accepted: bool
    # Short and secret-free: "HTTP <status>: <body>" (webhook) or "Slack API: <code>" (app).
    error: str | None = None
    status: int | None = None  # the HTTP status, when there was an answer
    retry_after: float | None = None  # seconds, when rate limited
    permanent: bool = False  # retrying cannot fix it: the row fails after this attempt
    # (permanent and transient: the row fails and the pass ends, for an answer not known to be
    # about this one message)
    refused: bool = False  # the destination itself is gone or forbidden: nothing more goes out
    transient: bool = False  # Slack unreachable or failing: later rows would fail the same way
    skipped: str | None = None  # nothing to do for this row, and why

    @property
    def rate_limited(self) -> bool:
        return self.retry_after is not None


def seconds(value: object) -> float:
    """A Retry-After header as seconds (a default when it is missing or unreadable)."""
    if isinstance(value, list):  # urllib may give repeated headers as a list
        value = value[0] if value else None
    try:
        return max(float(str(value)), 0.0)
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER
