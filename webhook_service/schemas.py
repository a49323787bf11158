"""Response-model base shared by every router."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, field_serializer


class UTCModel(BaseModel):
    """Every timestamp leaves the API as ISO 8601 in UTC (`…Z`)."""

    @field_serializer("*", when_used="json")
    def _utc(self, value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return value


# PostgreSQL text cannot hold NUL: a string parameter carrying one is refused here (422) rather
# than by the database (a 500). Found by tests/webhook_service/test_openapi_fuzz.py.
NO_NUL = r"^[^\x00]*$"


def assume_utc(value: datetime) -> datetime:
    """A time given without a zone is UTC, as every time in this API is; never the server's."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


UTCDateTime = Annotated[datetime, AfterValidator(assume_utc)]


class ErrorBody(BaseModel):
    error: str
    detail: str
