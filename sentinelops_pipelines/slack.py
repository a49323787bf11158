"""Slack as a Dagster resource: the incoming webhook or the Slack app, read from the settings
at run time. Secrets (the webhook URL, the bot token) never appear in Dagster's resource config
shown in the UI, in logs or in the database.

The delivery policy lives here too, so tests can shrink timeouts and backoff.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import dagster as dg
import psycopg

from sentinelops.settings import get_settings
from sentinelops.slack import config
from sentinelops.slack.delivery import Destination, deliver
from sentinelops.slack.result import Policy, PostResult


class SlackResource(dg.ConfigurableResource):
    """Unset fields come from the settings: SLACK_BOT_TOKEN + SLACK_CHANNEL_ID (app mode, which
    takes precedence), else SLACK_WEBHOOK_URL; neither: nothing is posted, nothing is lost."""

    webhook_url: str | None = None
    bot_token: str | None = None
    channel_id: str | None = None
    api_url: str | None = None
    # Buttons on app messages: whether interactions can be verified (SLACK_SIGNING_SECRET).
    buttons: bool | None = None
    timeout_seconds: float = 10.0
    retry_backoff_seconds: float = 30.0
    max_backoff_seconds: float = 3600.0
    # Longer than a post can take: a claimed row is retried only once its sender must be gone.
    lease_seconds: float = 120.0

    def policy(self) -> Policy:
        return Policy(
            timeout_seconds=self.timeout_seconds,
            retry_backoff_seconds=self.retry_backoff_seconds,
            max_backoff_seconds=self.max_backoff_seconds,
            lease_seconds=self.lease_seconds,
        )

    def destination(self) -> Destination | None:
        return config.destination(
            get_settings(),
            self.policy(),
            webhook_url=self.webhook_url,
            bot_token=self.bot_token,
            channel_id=self.channel_id,
            api_url=self.api_url,
            buttons=self.buttons,
        )

    @property
    def configured(self) -> bool:
        return self.destination() is not None

    def fingerprint(self) -> str | None:
        destination = self.destination()
        return destination.fingerprint() if destination else None

    def backoff(self, attempts: int) -> float:
        return self.policy().backoff(attempts)

    def post(self, text: str, blocks: list[dict] | None = None) -> PostResult:
        """One top-level message (a failed run's notice): no outbox row, one attempt."""
        destination = self.destination()
        if destination is None:
            return PostResult(False, error="Slack is not configured")
        return destination.post(text, blocks)


# What deliver() ends its pass on: Slack failing, rate limiting, or refusing the destination.
STOPPED = frozenset({"retry_later", "rate_limited", "held"})


def deliver_found(
    url: str, slack: SlackResource, anomaly_ids: Iterable[int], log: Any
) -> Counter[str]:
    """Post the alerts an evaluation just committed for these anomalies, at once: the path to
    Slack without waiting for another run. Never raises: whatever is not posted here stays
    queued, and the alerts job (run after every rules run) posts it, with its retries."""
    ids = sorted(set(anomaly_ids))
    destination = slack.destination() if ids else None
    outcomes: Counter[str] = Counter()
    if destination is None:
        return outcomes  # nothing found, or Slack not configured: the alerts job says so
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            for anomaly_id in ids:
                outcomes += deliver(conn, destination, log, anomaly_id=anomaly_id, recover=False)
                if outcomes.keys() & STOPPED:  # the rest would wait for the same answer
                    break
    except Exception as exc:  # the rows stay pending: the alerts job's run posts them
        log.warning("alerts not posted at once (%s); the alerts job posts them",
                    type(exc).__name__)  # fmt: skip
        outcomes["deferred"] += 1
    return outcomes
