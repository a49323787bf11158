"""The one place that reads the environment: every process builds a `Settings` from it."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Values copied from .env.example must never reach production: refuse them at start-up.
PLACEHOLDER_MARKERS = ("change_me", "changeme", "replace_me", "xxxxxxxx")


def _split_csv(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(part).strip() for part in value if str(part).strip()]  # type: ignore[attr-defined]


def _refuse_placeholders(name: str, secrets: list[SecretStr]) -> list[SecretStr]:
    for secret in secrets:
        lowered = secret.get_secret_value().lower()
        if any(marker in lowered for marker in PLACEHOLDER_MARKERS):
            raise ValueError(
                f"{name} still holds the placeholder from .env.example; set a real value"
            )
    return secrets


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", validate_default=True)

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
    alert_min_severity: Literal["low", "medium", "high"] = Field(
        default="medium", alias="SENTINELOPS_ALERT_MIN_SEVERITY"
    )

    openai_api_key: SecretStr | None = Field(default=None, alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, alias="OPENAI_BASE_URL")
    openai_model: str = Field(default="gpt-4o-mini", alias="OPENAI_MODEL")

    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, alias="SENTINELOPS_API_TOKEN"
    )
    public_reads: bool = Field(default=False, alias="SENTINELOPS_PUBLIC_READS")

    rules_file: str | None = Field(default=None, alias="SENTINELOPS_RULES_FILE")
    partitions_start: str = Field(default="2026-01-01", alias="SENTINELOPS_PARTITIONS_START")

    db_pool_max_size: int = Field(default=10, ge=1, alias="SENTINELOPS_DB_POOL_SIZE")
    db_timeout_seconds: float = Field(default=3.0, gt=0, alias="SENTINELOPS_DB_TIMEOUT")
    # false behind a transaction-mode pooler (PgBouncer), which hands each transaction to any
    # server connection: a statement prepared on one is missing on the next.
    db_prepare: bool = Field(default=True, alias="SENTINELOPS_DB_PREPARE")

    @field_validator("stripe_webhook_secrets", mode="before")
    @classmethod
    def _parse_webhook_secrets(cls, value: object) -> list[str]:
        return _split_csv(value)

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _parse_api_tokens(cls, value: object) -> list[str]:
        return _split_csv(value)

    @field_validator("stripe_webhook_secrets")
    @classmethod
    def _check_webhook_secrets(cls, value: list[SecretStr]) -> list[SecretStr]:
        return _refuse_placeholders("STRIPE_WEBHOOK_SECRET", value)

    @field_validator("api_tokens")
    @classmethod
    def _check_api_tokens(cls, value: list[SecretStr]) -> list[SecretStr]:
        return _refuse_placeholders("SENTINELOPS_API_TOKEN", value)

    @field_validator("stripe_api_key")
    @classmethod
    def _check_stripe_api_key(cls, value: SecretStr | None) -> SecretStr | None:
        return _refuse_placeholders("STRIPE_API_KEY", [value])[0] if value else value

    @field_validator(
        "database_url", "openai_base_url", "rules_file", "stripe_api_key", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("sentinelops_home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @property
    def partitions_start_at(self) -> datetime:
        """SENTINELOPS_PARTITIONS_START as the instant the first partition starts (UTC)."""
        return datetime.fromisoformat(self.partitions_start).replace(tzinfo=UTC)

    @property
    def webhook_secret_values(self) -> list[str]:
        return [secret.get_secret_value() for secret in self.stripe_webhook_secrets]

    @property
    def api_token_values(self) -> list[str]:
        return [token.get_secret_value() for token in self.api_tokens]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment (and `.env`), read once per process."""
    return Settings()
