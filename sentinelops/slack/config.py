"""Which Slack destination the settings name: the app (bot token + channel, which takes
precedence), else the incoming webhook, else none (nothing posted, nothing lost)."""

from __future__ import annotations

from sentinelops.settings import Settings
from sentinelops.slack.app import SlackApp
from sentinelops.slack.delivery import Destination
from sentinelops.slack.result import Policy
from sentinelops.slack.webhook import IncomingWebhook


def destination(
    settings: Settings,
    policy: Policy | None = None,
    *,
    webhook_url: str | None = None,
    bot_token: str | None = None,
    channel_id: str | None = None,
    api_url: str | None = None,
    buttons: bool | None = None,
) -> Destination | None:
    """The configured destination; keyword arguments override the settings (tests, Dagster
    resource config)."""
    policy = policy or Policy()
    token = bot_token or _secret(settings.slack_bot_token)
    channel = channel_id or settings.slack_channel_id
    if token and channel:
        return SlackApp(
            token=token,
            channel_id=channel,
            api_url=api_url or settings.slack_api_url,
            policy=policy,
            buttons=interactive(settings) if buttons is None else buttons,
            console_url=settings.console_url,
        )
    url = webhook_url or _secret(settings.slack_webhook_url)
    if url:
        return IncomingWebhook(url, policy, console_url=settings.console_url)
    return None


def _secret(value: object) -> str | None:
    return value.get_secret_value() if value is not None else None  # type: ignore[attr-defined]


def interactive(settings: Settings) -> bool:
    """Whether button presses can reach the API: verified over HTTP with the signing secret,
    or over Socket Mode with the app token."""
    return settings.slack_signing_secret is not None or settings.slack_app_token is not None
