from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sentinelops.severity import Severity
from webhook_service.anomalies.lifecycle import Status
from webhook_service.schemas import NO_NUL, UTCModel

Sort = Literal["severity_desc", "detected_desc", "detected_asc"]


class Anomaly(UTCModel):
    id: int
    rule: str
    scope: str
    severity: Severity
    status: Status
    title: str
    window_start: datetime
    window_end: datetime
    detected_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    cleared_at: datetime | None = Field(
        description="when the condition stopped (the end of its last breaching window), set once"
        " its rule has not breached for a quiet gap of closed windows; null while it lasts or"
        " since it came back. The status does not change: people still resolve"
    )
    found_late: bool = Field(
        description="found long after its window ended (a catch-up after downtime, imported"
        " history): listed in one catch-up message instead of posted on its own"
    )
    silenced_by: int | None = Field(
        description="the silence that held its Slack messages when it was recorded, if one did"
    )
    evidence: dict[str, Any]


class HistoryEntry(UTCModel):
    from_status: Status | None
    to_status: Status
    at: datetime
    actor: str
    note: str | None


class AnomalyDetail(Anomaly):
    history: list[HistoryEntry]


class AnomalyPage(BaseModel):
    items: list[Anomaly]
    next_cursor: str | None


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Status
    note: str | None = Field(default=None, max_length=2000, pattern=NO_NUL)
