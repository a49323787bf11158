"""The webhook_gap rule: events Stripe holds that the webhook never stored, as one finding.

Pure like the window rules; reconciliation builds the `Gap` from what it stored and records
the finding through the same anomaly path, keyed by the 5-minute window of the earliest
missing event so that recording it again is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sentinelops.windows import WINDOW, window_floor
from sentinelops_pipelines.rules.definitions import GapRule
from sentinelops_pipelines.rules.model import Finding


@dataclass(frozen=True)
class Gap:
    missing: int
    by_type: dict[str, int]
    first_created: datetime
    last_created: datetime
    sample_ids: list[str]


def gap_title(missing: int, first: datetime, last: datetime) -> str:
    events = "event" if missing == 1 else "events"
    span = f"{first:%Y-%m-%d %H:%M}" + ("" if last == first else f" to {last:%Y-%m-%d %H:%M}")
    return f"{missing} Stripe {events} never arrived by webhook ({span} UTC)"


def find_gap(name: str, rule: GapRule, gap: Gap, found_at: datetime) -> Finding | None:
    """The finding for `gap`, or None when the rule is off or too few events are missing."""
    severity = rule.severity(gap.missing) if rule.enabled else None
    if severity is None:
        return None
    return Finding(
        rule=name,
        scope="all",
        severity=severity,
        title=gap_title(gap.missing, gap.first_created, gap.last_created),
        window_start=window_floor(gap.first_created),
        window_end=window_floor(gap.last_created) + WINDOW,
        evidence={
            "missing": gap.missing,
            "missing_by_type": dict(sorted(gap.by_type.items())),
            "first_created": gap.first_created.isoformat(),
            "last_created": gap.last_created.isoformat(),
            "sample_event_ids": gap.sample_ids,
            "found_at": found_at.isoformat(),
            "found_by": "reconciliation",
            "thresholds": {"min_missing": rule.min_missing, "severity_at": rule.severity_at},
            "rule_definition": rule.model_dump(mode="json"),
            "rule_version": rule.version,
        },
    )
