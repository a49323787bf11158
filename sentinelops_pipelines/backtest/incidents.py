"""Findings grouped into incidents the way the product records them, and two sets of incidents
compared. Pure Python: no SQL, no Dagster."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from sentinelops.severity import Severity, higher, rank
from sentinelops.windows import WINDOW
from sentinelops_pipelines.rules.model import Finding

Verdict = Literal["same", "changed", "new", "gone"]


def utc_day(moment: datetime) -> date:
    """The UTC day an incident starts in: the table's rows."""
    return moment.astimezone(UTC).date()


@dataclass(frozen=True)
class Incident:
    """What one anomaly would be: a rule's breaches of one scope, no quiet gap between them."""

    rule: str
    scope: str
    start: datetime
    end: datetime
    severity: Severity

    @property
    def day(self) -> date:
        return utc_day(self.start)

    def overlaps(self, other: Incident) -> bool:
        return (self.rule, self.scope) == (other.rule, other.scope) and (
            self.start < other.end and other.start < self.end
        )


def group_incidents(findings: Iterable[Finding], quiet_gap: timedelta) -> list[Incident]:
    """Incidents as storage/anomalies.py `record` makes them: a breach whose window starts at
    most `quiet_gap` after an incident of its rule and scope ended extends it; an incident's
    severity is the highest of its windows (a window judged twice keeps its worse verdict)."""
    worst: dict[tuple[str, str, datetime], Finding] = {}
    for f in findings:
        key = (f.rule, f.scope, f.window_start)
        if key not in worst or rank(f.severity) > rank(worst[key].severity):
            worst[key] = f
    incidents: list[Incident] = []
    for (rule, scope, start), f in sorted(worst.items(), key=lambda item: item[0]):
        # In UTC whatever the session's time zone: days are UTC days.
        start = start.astimezone(UTC)
        end = (f.window_end or start + WINDOW).astimezone(UTC)
        last = incidents[-1] if incidents else None
        if last and (last.rule, last.scope) == (rule, scope) and last.end >= start - quiet_gap:
            incidents[-1] = replace(
                last,
                end=max(last.end, end),
                severity=higher(last.severity, f.severity),  # type: ignore[arg-type]
            )
        else:
            incidents.append(Incident(rule, scope, start, end, f.severity))
    return incidents


@dataclass(frozen=True)
class Difference:
    """How one incident fares under the candidate: kept with the same or another severity,
    raised only by the candidate (new), or raised only by the current rules (gone)."""

    verdict: Verdict
    rule: str
    scope: str
    start: datetime
    end: datetime
    current: Severity | None
    candidate: Severity | None

    @property
    def day(self) -> date:
        return utc_day(self.start)


def compare(current: list[Incident], candidate: list[Incident]) -> list[Difference]:
    """Each candidate incident against the current ones of its rule and scope that overlap it
    in time (the highest of their severities, if several merge into one), then every current
    incident no candidate overlaps; in time order."""
    by_key: dict[tuple[str, str], list[Incident]] = {}
    for inc in current:
        by_key.setdefault((inc.rule, inc.scope), []).append(inc)
    matched: set[Incident] = set()
    differences = []
    for cand in candidate:
        overlapping = [c for c in by_key.get((cand.rule, cand.scope), []) if c.overlaps(cand)]
        matched.update(overlapping)
        before = max((c.severity for c in overlapping), key=rank, default=None)
        verdict: Verdict = (
            "new" if before is None else "same" if before == cand.severity else "changed"
        )
        differences.append(
            Difference(verdict, cand.rule, cand.scope, cand.start, cand.end, before, cand.severity)
        )
    differences += [
        Difference("gone", c.rule, c.scope, c.start, c.end, c.severity, None)
        for c in current
        if c not in matched
    ]
    return sorted(differences, key=lambda d: (d.start, d.rule, d.scope))
