"""The deterministic wording of a day's facts: Overall, Highlights, Watch, always available.

Every number printed here is copied from the facts, so this text passes the same fact check
as an AI's. The watch thresholds are judgement, not facts, and are never printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sentinelops.money import format_major
from sentinelops.severity import HIGHEST_FIRST

# A metric is worth watching when it moved this much against its 7-day average.
RATE_POINTS = 2.0  # failure rate up by at least this many percentage points
COUNT_FACTOR = 2.0  # refunds, disputes, cancellations at least twice their average
MIN_COUNT = 3  # ... and at least this many (one dispute on a quiet day is not a trend)
DROP_PCT = -30.0  # payments or revenue down this much
LABELS = {
    "payments": "Payments",
    "refunds": "Refunds",
    "disputes": "Disputes",
    "subscriptions_started": "Subscriptions started",
    "subscriptions_cancelled": "Subscriptions cancelled",
}


@dataclass(frozen=True)
class Wording:
    overall: str
    highlights: list[str]
    watch: list[str] = field(default_factory=list)
    used_ai: bool = False
    ai_error: str | None = None
    model: str | None = None


def num(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def _vs(entry: dict[str, Any], show: Any, unit: str = "%") -> str:
    parts = []
    for base, change, label in (
        ("previous_day", "vs_previous_day", "previous day"),
        ("average_7d", "vs_average_7d", "7-day average"),
    ):
        if entry.get(base) is None:
            continue
        delta = entry.get(f"{change}_pct", entry.get(f"{change}_points"))
        moved = "" if delta is None else f", {delta:+.1f}{' points' if unit == 'pt' else '%'}"
        parts.append(f"{label} {show(entry[base])}{moved}")
    return f" ({'; '.join(parts)})" if parts else ""


def _plural(count: int, one: str, many: str) -> str:
    return f"{num(count)} {one if count == 1 else many}"


def compose(facts: dict[str, Any]) -> Wording:
    m, a, day = facts["metrics"], facts["anomalies"], facts["date"]
    rate = m["failure_rate_pct"]
    if not facts["windows_rolled_up"]:
        overall = f"No rolled-up traffic for {day}: the rules have not run over this day yet."
    else:
        failed = f", {rate['day']:.1f}% failed" if rate["day"] is not None else ""
        top = [format_major(r["day"], r["currency"]) for r in facts["revenue"][:3] if r["day"]]
        revenue = f"; revenue {', '.join(top)}" if top else ""
        silenced = a["silenced"]["total"]
        held = f" ({silenced} during a silence)" if silenced else ""
        overall = (
            f"{_plural(m['payments']['day'], 'payment', 'payments')} on {day}{failed}{revenue};"
            f" {_plural(a['opened']['total'], 'anomaly', 'anomalies')} opened{held},"
            f" {a['still_open']['total']} still open at the end of the day."
        )
    highlights = [f"Payments: {num(m['payments']['day'])}{_vs(m['payments'], num)}"]
    if rate["day"] is not None:
        highlights.append(
            f"Failure rate: {rate['day']:.1f}%{_vs(rate, lambda v: f'{v:.1f}%', 'pt')}"
        )
    for r in facts["revenue"]:
        currency, amount = r["currency"], format_major(r["day"], r["currency"])
        highlights.append(f"Revenue: {amount}{_vs(r, lambda v, c=currency: format_major(v, c))}")
    for name in ("refunds", "disputes", "subscriptions_started", "subscriptions_cancelled"):
        highlights.append(f"{LABELS[name]}: {num(m[name]['day'])}{_vs(m[name], num)}")
    highlights.append(
        f"Anomalies: {a['opened']['total']} opened ({_by_severity(a['opened'])}),"
        f" {a['resolved']['total']} resolved, {a['still_open']['total']} still open"
        + "".join(
            f", {a[kind]['total']} {said}"
            for kind, said in (("silenced", "found during a silence"), ("cleared", "cleared"))
            if a[kind]["total"]
        )
    )
    return Wording(overall=overall, highlights=highlights, watch=_watch(facts))


def _by_severity(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts[s]} {s}" for s in HIGHEST_FIRST)


def _watch(facts: dict[str, Any]) -> list[str]:
    m, a = facts["metrics"], facts["anomalies"]
    watch = []
    for severity in HIGHEST_FIRST:
        count = a["still_open"][severity]
        if count:
            watch.append(f"{_plural(count, severity + ' anomaly', severity + ' anomalies')}"
                         " still open")  # fmt: skip
    cleared = a["cleared_still_open"]["total"]
    if cleared:
        # The condition stopped but nobody closed the incident: a fix nobody recorded, or a
        # rule that no longer sees what it should.
        watch.append(
            f"{_plural(cleared, 'anomaly', 'anomalies')} cleared on"
            + (" its own but is still open: resolve it" if cleared == 1
               else " their own but are still open: resolve them")
            + " or look why"
        )  # fmt: skip
    if a["still_open_by_rule"]:
        rules = ", ".join(f"{rule} ({n})" for rule, n in a["still_open_by_rule"].items())
        watch.append(f"Open anomalies by rule: {rules}")
    rate = m["failure_rate_pct"]
    if rate["day"] is not None and rate["average_7d"] is not None:
        if rate["day"] - rate["average_7d"] >= RATE_POINTS:
            watch.append(
                f"Failure rate {rate['day']:.1f}% against a 7-day average of"
                f" {rate['average_7d']:.1f}%"
            )
    for name in ("refunds", "disputes", "subscriptions_cancelled"):
        entry = m[name]
        average = entry["average_7d"]
        if (
            entry["day"] >= MIN_COUNT
            and average is not None
            and entry["day"] >= COUNT_FACTOR * average
        ):
            watch.append(f"{LABELS[name]}: {num(entry['day'])} against a 7-day average of"
                         f" {num(average)}")  # fmt: skip
    change = m["payments"]["vs_average_7d_pct"]
    if change is not None and change <= DROP_PCT:
        watch.append(f"Payments {change:+.1f}% against the 7-day average")
    for r in facts["revenue"]:
        if r["vs_average_7d_pct"] is not None and r["vs_average_7d_pct"] <= DROP_PCT:
            watch.append(
                f"Revenue {r['currency']} {r['vs_average_7d_pct']:+.1f}% against the 7-day average"
            )
    if 0 < facts["windows_rolled_up"] < facts["windows_per_day"]:
        watch.append(
            f"Partial day: {facts['windows_rolled_up']} of {facts['windows_per_day']}"
            f" {facts['window_minutes']}-minute windows rolled up"
        )
    return watch


def render_text(day: str, wording: Wording) -> str:
    """The plain-text summary: what Slack shows in notifications and the API serves."""
    lines = [f"SentinelOps daily summary, {day} (UTC)", "", f"Overall: {wording.overall}", ""]
    lines += ["Highlights:", *(f"- {item}" for item in wording.highlights), ""]
    lines += ["Watch:", *(f"- {item}" for item in wording.watch or ["Nothing needs watching."])]
    return "\n".join(lines)
