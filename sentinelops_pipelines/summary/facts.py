"""The day's facts, from the rollups and anomalies only: each metric against the previous day
and the 7-day average, every derived number computed (and rounded) here, once.

The facts are the whole input of the wording and the reference of the fact check, so they
are bounded in size: at most MAX_CURRENCIES currencies and MAX_RULES rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sentinelops.money import major_units
from sentinelops.severity import HIGHEST_FIRST

AVERAGE_DAYS = 7
WINDOWS_PER_DAY = 288
MAX_CURRENCIES = 10
MAX_RULES = 10
LEVELS = ("day", "previous_day", "average_7d")
# Counted things that are no metric: reportable only next to their word ("288 windows").
CONTEXT_UNITS = {
    "windows": ("windows_rolled_up", "windows_per_day"),
    "minutes": ("window_minutes",),
    "days": ("average_window_days", "days_in_average"),
}
# Anomaly counts, each per severity and in total. `silenced`: opened during a silence (nothing
# was posted while it lasted); `cleared`: stopped breaching during the day; `cleared_still_open`:
# stopped breaching by the end of the day, but nobody has resolved them.
ANOMALY_COUNTS = ("opened", "still_open", "resolved", "silenced", "cleared", "cleared_still_open")
# Rollup column per fact name.
METRICS = {
    "payments": "payments",
    "payments_failed": "payments_failed",
    "refunds": "refunds",
    "disputes": "disputes",
    "subscriptions_started": "subscriptions_started",
    "subscriptions_cancelled": "subscriptions_cancelled",
}


def _change_pct(value: float, base: float | None) -> float | None:
    if not base:
        return None
    return round((value - base) / base * 100, 1)


def _compare(value: float, previous: float | None, average: float | None) -> dict[str, Any]:
    return {
        "day": value,
        "previous_day": previous,
        "average_7d": average,
        "vs_previous_day_pct": _change_pct(value, previous),
        "vs_average_7d_pct": _change_pct(value, average),
    }


def _rate(failed: float, attempts: float) -> float | None:
    return round(failed / attempts * 100, 1) if attempts else None


def build(
    day: date,
    daily: dict[date, dict[str, int]],
    revenue: dict[date, dict[str, int]],
    anomalies: dict[str, dict[str, int]],
    open_by_rule: dict[str, int],
) -> dict[str, Any]:
    """`daily`: rollup sums per day (with `windows`); `revenue`: amount per currency per day;
    `anomalies`: per severity, each of ANOMALY_COUNTS (a missing one counts 0)."""
    previous_day = day - timedelta(days=1)
    history = [
        daily[d]
        for d in (day - timedelta(days=k) for k in range(1, AVERAGE_DAYS + 1))
        if d in daily
    ]
    today = daily.get(day, {})
    previous = daily.get(previous_day)

    def average(values: list[float]) -> float | None:
        return round(sum(values) / len(history), 1) if history else None

    metrics = {
        name: _compare(
            today.get(column, 0),
            previous.get(column, 0) if previous else None,
            average([h.get(column, 0) for h in history]),
        )
        for name, column in METRICS.items()
    }
    rate, previous_rate = (
        _rate(today.get("payments_failed", 0), today.get("payments", 0)),
        _rate(previous["payments_failed"], previous["payments"]) if previous else None,
    )
    average_rate = _rate(
        sum(h["payments_failed"] for h in history), sum(h["payments"] for h in history)
    )
    metrics["failure_rate_pct"] = {
        "day": rate,
        "previous_day": previous_rate,
        "average_7d": average_rate,
        "vs_previous_day_points": _points(rate, previous_rate),
        "vs_average_7d_points": _points(rate, average_rate),
    }
    return {
        "date": day.isoformat(),
        "timezone": "UTC",
        "windows_rolled_up": today.get("windows", 0),
        "windows_per_day": WINDOWS_PER_DAY,
        "window_minutes": 5,
        "average_window_days": AVERAGE_DAYS,
        "days_in_average": len(history),
        "metrics": metrics,
        "revenue": _revenue(day, revenue, history_days=len(history), has_previous=bool(previous)),
        "anomalies": _anomalies(anomalies, open_by_rule),
    }


def _points(value: float | None, base: float | None) -> float | None:
    return None if value is None or base is None else round(value - base, 1)


def _revenue(
    day: date, revenue: dict[date, dict[str, int]], history_days: int, has_previous: bool
) -> list[dict[str, Any]]:
    today = revenue.get(day, {})
    previous = revenue.get(day - timedelta(days=1), {})
    window = [revenue.get(day - timedelta(days=k), {}) for k in range(1, AVERAGE_DAYS + 1)]
    currencies = set(today) | set(previous) | {c for amounts in window for c in amounts}
    ranked = sorted(currencies, key=lambda c: (-today.get(c, 0), -previous.get(c, 0), c))
    rows = []
    for currency in ranked[:MAX_CURRENCIES]:
        history = sum(amounts.get(currency, 0) for amounts in window)
        average = major_units(history / history_days, currency) if history_days else None
        rows.append(
            {
                "currency": currency.upper(),
                **_compare(
                    major_units(today.get(currency, 0), currency),
                    major_units(previous.get(currency, 0), currency) if has_previous else None,
                    average,
                ),
            }
        )
    return rows


def _anomalies(by_severity: dict[str, dict[str, int]], open_by_rule: dict[str, int]) -> dict:
    counts: dict[str, Any] = {}
    for kind in ANOMALY_COUNTS:
        per = {s: int(by_severity.get(s, {}).get(kind, 0)) for s in HIGHEST_FIRST}
        counts[kind] = {**per, "total": sum(per.values())}
    ranked = sorted(open_by_rule.items(), key=lambda item: (-item[1], item[0]))[:MAX_RULES]
    counts["still_open_by_rule"] = dict(ranked)
    return counts


@dataclass(frozen=True)
class Series:
    """One metric's reportable figures: its levels by role (one of LEVELS; None for plain counts
    such as the anomalies') and its changes, in `change_unit`."""

    name: str  # "refunds", "revenue:USD", "anomalies", "windows"
    unit: str  # "count", "money:USD", "percent" or one of CONTEXT_UNITS
    levels: tuple[tuple[str | None, Decimal], ...]
    changes: tuple[Decimal, ...] = ()
    change_unit: str = "percent"  # or "points": the failure rate moves in percentage points

    def level(self, role: str) -> Decimal | None:
        return next((v for r, v in self.levels if r == role), None)


def _series(name: str, unit: str, entry: dict[str, Any], change_unit: str = "percent") -> Series:
    levels = tuple((r, Decimal(str(entry[r]))) for r in LEVELS if entry.get(r) is not None)
    changes = tuple(
        Decimal(str(v)) for k, v in entry.items() if k.startswith("vs_") and v is not None
    )
    return Series(name, unit, levels, changes, change_unit)


def reportable(facts: dict[str, Any]) -> list[Series]:
    """The figures a summary may state, each as what it is: the reference of the fact check.
    Deliberately not every number in the facts: the date's parts, the rule names and the
    bookkeeping (288 windows a day) vouch for no metric."""
    found = [
        _series(name, "percent", entry, "points")
        if name == "failure_rate_pct"
        else _series(name, "count", entry)
        for name, entry in facts.get("metrics", {}).items()
    ]
    for row in facts.get("revenue", []):
        currency = str(row["currency"]).upper()
        found.append(_series(f"revenue:{currency}", f"money:{currency}", row))
    a = facts.get("anomalies", {})
    counts = [v for kind in ANOMALY_COUNTS for v in a.get(kind, {}).values()]
    counts += a.get("still_open_by_rule", {}).values()
    found.append(Series("anomalies", "count", tuple((None, Decimal(str(v))) for v in counts)))
    for unit, keys in CONTEXT_UNITS.items():
        values = tuple((None, Decimal(str(facts[k]))) for k in keys if facts.get(k) is not None)
        found.append(Series(unit, unit, values))
    return found
