"""The anomaly lifecycle as a table: which status may follow which."""

from __future__ import annotations

from enum import StrEnum

from webhook_service.errors import SentinelOpsError


class Status(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


ALLOWED_TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.OPEN: frozenset({Status.ACKNOWLEDGED, Status.RESOLVED}),
    Status.ACKNOWLEDGED: frozenset({Status.RESOLVED, Status.OPEN}),
    Status.RESOLVED: frozenset({Status.OPEN}),
}


class InvalidTransition(SentinelOpsError):
    status_code = 409

    def __init__(self, anomaly_id: int, current: Status, target: Status) -> None:
        reason = "it already is" if current == target else "that transition is not allowed"
        allowed = ", ".join(sorted(ALLOWED_TRANSITIONS[current])) or "none"
        super().__init__(
            f"anomaly {anomaly_id} cannot move from {current} to {target}: {reason}"
            f" (from {current}: {allowed})"
        )


def check_transition(anomaly_id: int, current: Status, target: Status) -> None:
    if target not in ALLOWED_TRANSITIONS[current]:
        raise InvalidTransition(anomaly_id, current, target)
