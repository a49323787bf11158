"""The overview's small trend charts as SVG geometry, drawn by the server (templates/trend.html):
a bar per hour or per day, or a line for a rate, with its total beside it.

Pure: no SQL, no request. Like chart.py, nothing loads or runs in the browser, so the charts hold
under the strict Content-Security-Policy and read the same with scripts off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sentinelops.money import format_amount, major_units
from webhook_service.console.chart import nice_top, short_number

WIDTH, HEIGHT = 300, 96
LEFT, RIGHT, TOP, BOTTOM = 34, 6, 8, 18  # room for the top value and the time labels
COUNT, PERCENT = "count", "percent"  # units; any other unit is a currency code
LABELS = {"hour": "%H:%M", "day": "%a %d"}
SPANS = {"hour": "per hour", "day": "per day"}


@dataclass(frozen=True)
class Bucket:
    start: datetime
    value: float | None  # None: nothing to measure (a failure rate without payments)


@dataclass
class Trend:
    id: str  # unique on the page: the SVG's title and desc are found by it
    title: str
    grain: str  # "hour" or "day"
    unit: str  # COUNT, PERCENT, or a currency code (values in its minor unit, as Stripe counts)
    buckets: list[Bucket]
    total: float | None  # the whole range's figure: a sum, or for a rate the overall rate
    kind: str = "bars"  # or "line"
    note: str = ""  # what the figure counts, for the description
    geometry: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.geometry = _geometry(self)

    def shown(self, value: float | None) -> str:
        """A value as people read it: `12`, `4.2 %`, `10.99 USD`; `–` where there is none."""
        if value is None:
            return "–"
        if self.unit == COUNT:
            return f"{value:,.0f}"
        if self.unit == PERCENT:
            return f"{value:.1f} %"
        return format_amount(value, self.unit)

    def label(self, start: datetime) -> str:
        return start.strftime(LABELS[self.grain])

    @property
    def description(self) -> str:
        """The chart in words, for screen readers: its range, its peak and its total."""
        first, last = self.buckets[0].start, self.buckets[-1].start
        measured = [b for b in self.buckets if b.value is not None]
        span = f"{self.title} {SPANS[self.grain]}, {first:%m-%d %H:%M} to {last:%m-%d %H:%M} UTC"
        if not measured:
            return f"{span}: nothing to measure. {self.note}".strip()
        if not any(b.value for b in measured):
            return f"{span}: {self.shown(0)} throughout. {self.note}".strip()
        peak = max(measured, key=lambda b: b.value or 0)
        return (
            f"{span}: highest {self.shown(peak.value)} at {self.label(peak.start)};"
            f" {'overall' if self.unit == PERCENT else 'total'} {self.shown(self.total)}."
            f" {self.note}"
        ).strip()


def _geometry(trend: Trend) -> dict:
    values = [b.value for b in trend.buckets if b.value is not None]
    top = nice_top(max(values, default=0.0) * 1.1 or 1.0)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(trend.buckets), 1)

    def y(value: float) -> float:
        return round(TOP + plot_h * (1 - min(value / top, 1.0)), 1)

    def centre(i: int) -> float:
        return round(LEFT + slot * (i + 0.5), 1)

    bars = [
        (round(LEFT + slot * (i + 0.15), 1), y(b.value), round(slot * 0.7, 1),
         round(TOP + plot_h - y(b.value), 1), b)
        for i, b in enumerate(trend.buckets) if b.value is not None
    ]  # fmt: skip
    # A rate has no value where nothing was attempted: the line breaks there, it does not dip.
    path, gap = [], True
    for i, b in enumerate(trend.buckets):
        if b.value is None:
            gap = True
            continue
        path.append(f"{'M' if gap else 'L'}{centre(i)},{y(b.value)}")
        gap = False
    points = [
        (centre(i), y(b.value), b) for i, b in enumerate(trend.buckets) if b.value is not None
    ]
    last = len(trend.buckets) - 1
    shown_top = top if trend.unit in (COUNT, PERCENT) else major_units(top, trend.unit)
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "plot": (LEFT, TOP, plot_w, plot_h),
        "bars": bars if trend.kind == "bars" else [],
        "line": " ".join(path) if trend.kind == "line" else "",
        "points": points if trend.kind == "line" else [],
        "top": short_number(shown_top) + (" %" if trend.unit == PERCENT else ""),
        "x_labels": [
            (centre(i), trend.label(trend.buckets[i].start), anchor)
            for i, anchor in ((0, "start"), (last // 2, "middle"), (last, "end"))
            if 0 <= i <= last
        ],
    }
