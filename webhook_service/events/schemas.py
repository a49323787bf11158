from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from webhook_service.schemas import UTCModel


class EventSummary(UTCModel):
    id: str
    type: str
    created: datetime
    received_at: datetime
    livemode: bool
    source: Literal["webhook", "reconciliation"]
    deliveries: int
    api_version: str | None
    account: str | None


class EventDetail(EventSummary):
    payload: dict[str, Any]


class EventPage(BaseModel):
    items: list[EventSummary]
    next_cursor: str | None
