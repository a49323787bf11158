"""The silence JSON and the body that creates one, with the window rules it must keep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from webhook_service.schemas import NO_NUL, UTCDateTime, UTCModel

State = Literal["active", "upcoming", "expired"]
# Longer than that is no longer "a while": a forgotten silence would hide real incidents.
MAX_AHEAD = timedelta(days=30)
# A start a little in the past is a client's clock or a slow request, not a backdating.
START_SLACK = timedelta(minutes=1)


class Silence(UTCModel):
    id: int
    rule: str | None = Field(description="null: every rule (of `scope`)")
    scope: str | None = Field(description="null: every scope (of `rule`)")
    starts_at: datetime
    ends_at: datetime = Field(description="ending one early sets it to that moment")
    reason: str
    created_by: str
    created_at: datetime
    ended_by: str | None = Field(description="who ended it early, if someone did")
    state: State


class SilencePage(BaseModel):
    items: list[Silence]


def _refuse(message: str) -> PydanticCustomError:
    # A custom error keeps the message as written (no "Value error, " prefix) in the 422 detail.
    return PydanticCustomError("silence_window", message)


class NewSilence(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: str | None = Field(
        default=None, min_length=1, max_length=100, pattern=NO_NUL, description="e.g. refund_spike"
    )
    scope: str | None = Field(default=None, min_length=1, max_length=100, pattern=NO_NUL)
    starts_at: UTCDateTime | None = Field(
        default=None, description="default now; a time without a zone is UTC"
    )
    ends_at: UTCDateTime = Field(description="in the future, at most 30 days ahead")
    reason: str = Field(min_length=1, max_length=500, pattern=NO_NUL)

    @model_validator(mode="after")
    def _window(self) -> Self:
        if not self.reason.strip():
            raise _refuse("reason must say something: it tells the others why this is quiet")
        if self.rule is None and self.scope is None:
            raise _refuse("a silence needs a rule, a scope or both")
        now = datetime.now(UTC)
        if self.ends_at <= now:
            raise _refuse("ends_at must be in the future")
        if self.ends_at > now + MAX_AHEAD:
            raise _refuse("ends_at must be at most 30 days ahead")
        if self.starts_at is not None:
            if self.starts_at >= self.ends_at:
                raise _refuse("starts_at must be before ends_at")
            if self.starts_at < now - START_SLACK:
                raise _refuse("starts_at must not be more than a minute in the past")
        return self
