from __future__ import annotations

import datetime as dt

from webhook_service.schemas import UTCModel


class DailySummary(UTCModel):
    date: dt.date
    overall: str
    highlights: list[str]
    watch: list[str]
    text: str
    used_ai: bool
    ai_error: str | None
    delivered_at: dt.datetime | None
