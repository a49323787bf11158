"""The incident chart as SVG geometry, drawn by the server: observed values, the expected
value and the bound the rule compared each window with, the incident's window shaded.

Rendered as plain SVG in the page (templates/chart.html): nothing to load, nothing to run, so
it works with scripts off and under the strict Content-Security-Policy, and a test can count
its points in the DOM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 24, 14, 34  # margins for the axes' labels


@dataclass(frozen=True)
class Point:
    start: datetime
    observed: float
    expected: float | None
    bound: float | None


@dataclass
class Chart:
    label: str
    bound_kind: str  # "above": fires at or above the bound; "below": at or below
    bucket: timedelta
    points: list[Point]
    since: datetime
    until: datetime
    shade: tuple[datetime, datetime]
    width: int = WIDTH
    height: int = HEIGHT
    geometry: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.geometry = _geometry(self)


def _geometry(chart: Chart) -> dict:
    span = max((chart.until - chart.since).total_seconds(), 1.0)
    values = [v for p in chart.points for v in (p.observed, p.expected, p.bound) if v is not None]
    top = nice_top(max(values, default=1.0) * 1.1 or 1.0)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(moment: datetime) -> float:
        seconds = (moment - chart.since).total_seconds()
        return round(LEFT + plot_w * min(max(seconds / span, 0.0), 1.0), 1)

    def y(value: float) -> float:
        return round(TOP + plot_h * (1 - min(value / top, 1.0)), 1)

    half = chart.bucket / 2
    observed = [(x(p.start + half), y(p.observed), p) for p in chart.points]
    expected = " ".join(
        f"{x(p.start + half)},{y(p.expected)}" for p in chart.points if p.expected is not None
    )
    # The bound holds for its whole window: a step per window, broken where there is none.
    bound = " ".join(
        f"M{x(p.start)},{y(p.bound)} H{x(p.start + chart.bucket)}"
        for p in chart.points
        if p.bound is not None
    )
    shade_x = x(max(chart.shade[0], chart.since))
    ticks = _time_ticks(chart.since, chart.until)
    return {
        "observed_line": " ".join(f"{px},{py}" for px, py, _ in observed),
        "observed": observed,
        "expected_line": expected,
        "bound_path": bound,
        "shade": (shade_x, max(x(min(chart.shade[1], chart.until)) - shade_x, 2.0)),
        "plot": (LEFT, TOP, plot_w, plot_h),
        "y_ticks": [(y(top * f), short_number(top * f)) for f in (0, 0.25, 0.5, 0.75, 1)],
        "x_ticks": [
            (x(t), t.strftime("%H:%M" if span <= 2 * 86400 else "%m-%d %H:%M")) for t in ticks
        ],  # fmt: skip
    }


def nice_top(value: float) -> float:
    """A round axis top at or above `value`: 1, 2, 2.5 or 5 times a power of ten."""
    power = 10 ** len(str(int(value))) / 10 if value >= 1 else 1
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return value


def short_number(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _time_ticks(since: datetime, until: datetime) -> list[datetime]:
    """About six round times across the range."""
    span = (until - since).total_seconds()
    step = next(
        (s for s in (900, 1800, 3600, 7200, 10800, 21600, 43200, 86400) if span / s <= 8), 172800
    )
    first = datetime.fromtimestamp((since.timestamp() // step + 1) * step, since.tzinfo)
    return [first + timedelta(seconds=step * i) for i in range(int(span // step) + 1)
            if first + timedelta(seconds=step * i) <= until]  # fmt: skip
