"""The one place that reads the environment: every process builds a `Settings` from it."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sentinelops.severity import Severity

# Values copied from .env.example must never reach production: refuse them at start-up, in every
# secret and every URL (a URL can carry a password or a webhook's secret path).
PLACEHOLDER_MARKERS = ("change_me", "changeme", "replace_me", "xxxxxxxx")
CHECKED_FOR_PLACEHOLDERS = (
    "database_url",
    "stripe_webhook_secrets",
    "stripe_api_key",
    "stripe_api_base",
    "slack_webhook_url",
    "slack_bot_token",
    "slack_signing_secret",
    "slack_app_token",
    "slack_api_url",
    "openai_api_key",
    "openai_base_url",
    "api_tokens",
    "session_key",
)
# `alice=so_…`: a name for the token's holder, shown as the actor `api:alice` in anomaly history.
# A bare token still works. Only a name-shaped prefix followed by a non-empty token counts, so a
# bare token that happens to hold "=" (base64 padding, "abc==") is not misread as a name.
TOKEN_NAME = re.compile(r"([A-Za-z][A-Za-z0-9_.-]{0,63})=([^=].*)", re.DOTALL)


def _split_csv(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(part).strip() for part in value if str(part).strip()]  # type: ignore[attr-defined]


def _plain(value: object) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value)


def split_token(entry: str) -> tuple[str | None, str]:
    """(name, token) of one SENTINELOPS_API_TOKEN entry; name None for a bare token."""
    named = TOKEN_NAME.fullmatch(entry)
    return (named[1], named[2]) if named else (None, entry)


class Settings(BaseSettings):
    # hide_input_in_errors: a refused setting is named, its value (often a secret) never shown.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", validate_default=True, hide_input_in_errors=True
    )

    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    sentinelops_home: Path = Field(default=Path(".sentinelops"), alias="SENTINELOPS_HOME")

    stripe_webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, alias="STRIPE_WEBHOOK_SECRET"
    )
    webhook_tolerance_seconds: int = Field(default=300, alias="SENTINELOPS_WEBHOOK_TOLERANCE")
    webhook_max_bytes: int = Field(default=1024 * 1024, gt=0, alias="SENTINELOPS_WEBHOOK_MAX_BYTES")

    stripe_api_key: SecretStr | None = Field(default=None, alias="STRIPE_API_KEY")
    stripe_api_base: str = Field(default="https://api.stripe.com", alias="STRIPE_API_BASE")

    slack_webhook_url: SecretStr | None = Field(default=None, alias="SLACK_WEBHOOK_URL")
    alert_min_severity: Severity = Field(default="medium", alias="SENTINELOPS_ALERT_MIN_SEVERITY")
    # App mode (takes precedence over the webhook): a bot posting to one channel, one message
    # per incident kept up to date, buttons when the signing secret is set.
    slack_bot_token: SecretStr | None = Field(default=None, alias="SLACK_BOT_TOKEN")
    slack_channel_id: str | None = Field(default=None, alias="SLACK_CHANNEL_ID")
    slack_signing_secret: SecretStr | None = Field(default=None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default="https://slack.com/api/", alias="SLACK_API_URL")
    # Where messages link to the console (Slack users open it from there).
    console_url: str = Field(
        default="http://127.0.0.1:8000/console", alias="SENTINELOPS_CONSOLE_URL"
    )

    openai_api_key: SecretStr | None = Field(default=None, alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, alias="OPENAI_BASE_URL")
    openai_model: str = Field(default="gpt-4o-mini", alias="OPENAI_MODEL")

    # Entries as configured, names included (`alice=so_…`); see api_token_entries.
    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, alias="SENTINELOPS_API_TOKEN"
    )
    public_reads: bool = Field(default=False, alias="SENTINELOPS_PUBLIC_READS")
    # Keys the tags that name unnamed tokens in anomaly history (and, later, console sessions).
    # Unset: generated into $SENTINELOPS_HOME/session-key (sentinelops/local_secrets.py).
    session_key: SecretStr | None = Field(default=None, alias="SENTINELOPS_SESSION_KEY")
    # Where the console links into the Dagster UI (runs, asset partitions).
    dagster_url: str = Field(default="http://127.0.0.1:3000", alias="SENTINELOPS_DAGSTER_URL")
    # How often the console's incident list refreshes itself (a wall screen stays current).
    console_refresh_seconds: float = Field(
        default=15.0, gt=0, alias="SENTINELOPS_CONSOLE_REFRESH_SECONDS"
    )
    # Largest JSON body any /api/v1 route but the webhook reads (413 above it).
    api_max_bytes: int = Field(default=64 * 1024, gt=0, alias="SENTINELOPS_API_MAX_BYTES")
    # Rejected webhook attempts are kept this long (an attacker's flood must not grow forever).
    rejections_retention_days: int = Field(
        default=30, ge=1, alias="SENTINELOPS_REJECTIONS_RETENTION_DAYS"
    )

    # The rules' per-window readings (the console's incident charts) are kept this long.
    readings_retention_days: int = Field(
        default=90, ge=1, alias="SENTINELOPS_READINGS_RETENTION_DAYS"
    )

    rules_file: str | None = Field(default=None, alias="SENTINELOPS_RULES_FILE")
    partitions_start: str = Field(default="2026-01-01", alias="SENTINELOPS_PARTITIONS_START")

    db_pool_max_size: int = Field(default=10, ge=1, alias="SENTINELOPS_DB_POOL_SIZE")
    db_timeout_seconds: float = Field(default=3.0, gt=0, alias="SENTINELOPS_DB_TIMEOUT")
    # false behind a transaction-mode pooler (PgBouncer), which hands each transaction to any
    # server connection: a statement prepared on one is missing on the next.
    db_prepare: bool = Field(default=True, alias="SENTINELOPS_DB_PREPARE")
    # The API's statements never wait without limit: a backfill holding a row or an advisory
    # lock makes a PATCH answer 503 with Retry-After after this long, not hang.
    db_lock_timeout_seconds: float = Field(default=5.0, gt=0, alias="SENTINELOPS_DB_LOCK_TIMEOUT")
    db_statement_timeout_seconds: float = Field(
        default=15.0, gt=0, alias="SENTINELOPS_DB_STATEMENT_TIMEOUT"
    )

    @field_validator("stripe_webhook_secrets", mode="before")
    @classmethod
    def _parse_webhook_secrets(cls, value: object) -> list[str]:
        return _split_csv(value)

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _parse_api_tokens(cls, value: object) -> list[str]:
        return _split_csv(value)

    @field_validator(*CHECKED_FOR_PLACEHOLDERS)
    @classmethod
    def _refuse_placeholders(cls, value: object) -> object:
        values = value if isinstance(value, list) else [] if value is None else [value]
        for item in values:
            lowered = _plain(item).lower()
            if any(marker in lowered for marker in PLACEHOLDER_MARKERS):
                raise ValueError("still holds the placeholder from .env.example; set a real value")
        return value

    @field_validator("api_tokens")
    @classmethod
    def _check_token_names(cls, value: list[SecretStr]) -> list[SecretStr]:
        names = [split_token(token.get_secret_value())[0] for token in value]
        repeated = sorted({n for n in names if n is not None and names.count(n) > 1})
        if repeated:
            raise ValueError(f"names a token holder twice: {', '.join(repeated)}")
        return value

    @field_validator(
        "database_url",
        "openai_base_url",
        "rules_file",
        "stripe_api_key",
        "slack_webhook_url",
        "slack_bot_token",
        "slack_channel_id",
        "slack_signing_secret",
        "slack_app_token",
        "openai_api_key",
        "session_key",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("slack_app_token")
    @classmethod
    def _check_app_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("must be an app-level token (xapp-…), made under Basic Information")
        return value

    @model_validator(mode="after")
    def _check_slack_app(self) -> Settings:
        # Half an app is refused at start-up, not found out at the first alert.
        if bool(self.slack_bot_token) != bool(self.slack_channel_id):
            raise ValueError("SLACK_BOT_TOKEN and SLACK_CHANNEL_ID are set together (app mode)")
        return self

    @field_validator("partitions_start")
    @classmethod
    def _check_partitions_start(cls, value: str) -> str:
        # Checked here, at start-up: read first when Dagster imports the partitions, a bad value
        # used to fail late, inside the code location, with a traceback about cron strings.
        # Only the YYYY-MM-DD form (Dagster's daily partitions read it with %Y-%m-%d), not the
        # other ISO forms fromisoformat also takes (20260101, 2026-W01-1).
        try:
            valid = date.fromisoformat(value).isoformat() == value
        except ValueError:
            valid = False
        if not valid:
            raise ValueError(f"must be a date like 2026-01-01, not {value!r}")
        return value

    @field_validator("sentinelops_home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @property
    def partitions_start_at(self) -> datetime:
        """SENTINELOPS_PARTITIONS_START as the instant the first partition starts (UTC)."""
        return datetime.fromisoformat(self.partitions_start).replace(tzinfo=UTC)

    @property
    def slack_app_mode(self) -> bool:
        """The bot token and its channel are both set: app mode, not the incoming webhook."""
        return bool(self.slack_bot_token and self.slack_channel_id)

    @property
    def webhook_secret_values(self) -> list[str]:
        return [secret.get_secret_value() for secret in self.stripe_webhook_secrets]

    @property
    def api_token_entries(self) -> list[tuple[str | None, str]]:
        """(holder's name or None, token) for each configured API token."""
        return [split_token(token.get_secret_value()) for token in self.api_tokens]

    @property
    def api_token_values(self) -> list[str]:
        """The tokens alone, names stripped: what a client sends as its bearer token."""
        return [token for _, token in self.api_token_entries]


class InvalidSettings(ValueError):
    """The environment holds a value SentinelOps refuses; the message names each, not values."""


def describe(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
        for e in error.errors()
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment (and `.env`), read once per process; every process calls
    this at start-up, so a refused value stops it there with one clear line."""
    try:
        return Settings()
    except ValidationError as exc:
        raise InvalidSettings(f"invalid settings: {describe(exc)}") from None
