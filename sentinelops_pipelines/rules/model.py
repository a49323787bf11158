"""What a rule sees (one 5-minute window with its baselines) and what it says (a finding).

Pure data: no Dagster, no SQL. The repository builds `Window`s from the rollup tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sentinelops.severity import Severity
from sentinelops.windows import WINDOW


@dataclass(frozen=True)
class Baseline:
    """Expected value of a metric per 5-minute window, and where that expectation comes from."""

    per_window: float
    source: Literal["same_hour_of_week", "30_day_average", "none"]
    windows: int  # how many history windows it rests on

    def expected(self, minutes: int) -> float:
        return self.per_window * minutes / 5


@dataclass(frozen=True)
class History:
    """Sums of the metrics over earlier windows, the ground a baseline stands on."""

    source: Literal["same_hour_of_week", "30_day_average"]
    totals: dict[str, int]
    windows: int


@dataclass(frozen=True)
class AmountWindow:
    """Successful payments of one currency in the window, with 30-day history from the rollup.

    The `spread_*` sums rest only on history rows that carry the sum of squared log amounts
    (rolled up since migration 0008): `spread_payments` payments in `spread_windows` windows,
    with the sums of ln(amount) and ln(amount)² over them. Zero when no such row exists yet."""

    currency: str
    payments: int
    amount_max: int
    max_event_id: str
    history_payments: int
    history_amount: int
    spread_payments: int = 0
    spread_windows: int = 0
    spread_log_amount: float = 0.0
    spread_log_amount_sq: float = 0.0


@dataclass(frozen=True)
class Window:
    start: datetime
    current: dict[str, int]  # this 5-minute window
    last_30m: dict[str, int]  # the six windows ending with this one
    history_30d: dict[str, int]  # sums over the 30 days before this window
    windows_30d: int
    same_hour: dict[str, int]  # sums over the same hour of week, previous four weeks
    windows_same_hour: int
    amounts: list[AmountWindow] = field(default_factory=list)
    # The 24 windows ending with this one: payments only (attempts, failed, succeeded).
    last_2h: dict[str, int] = field(default_factory=dict)
    # The same hour of week's median week, times its windows (events only): not moved by one
    # unusual week.
    same_hour_typical: dict[str, int] = field(default_factory=dict)
    # An early look at the window still open: the whole minutes of it seen so far (1 to 4);
    # None for the closed window.
    look_minutes: int | None = None

    @property
    def end(self) -> datetime:
        return self.start + WINDOW

    def value(self, metric: str, minutes: int = 5) -> int:
        """The metric over the `minutes` (5, 30 or 120) ending with this window."""
        sums = {5: self.current, 30: self.last_30m, 120: self.last_2h}
        return sums[minutes].get(metric, 0)

    def history(
        self,
        min_same_hour_windows: int | None,
        min_30d_windows: int | None,
        min_totals: Mapping[str, int] | None = None,
    ) -> History | None:
        """The same hour of week when it has at least its minimum of windows (None: never) and
        `min_totals`, else the 30 days on the same terms, else None."""
        for history, minimum in (
            (History("same_hour_of_week", self.same_hour, self.windows_same_hour),
             min_same_hour_windows),
            (History("30_day_average", self.history_30d, self.windows_30d), min_30d_windows),
        ):  # fmt: skip
            if minimum is None or history.windows < minimum:
                continue
            if all(history.totals.get(m, 0) >= n for m, n in (min_totals or {}).items()):
                return history
        return None

    def baseline(self, metric: str, min_same_hour_windows: int, min_30d_windows: int) -> Baseline:
        """Same hour of week when enough weeks exist, else the 30-day average, else none."""
        # A minimum of 0 windows turns that history off.
        history = self.history(min_same_hour_windows or None, min_30d_windows or None)
        if history is None:
            return Baseline(0.0, "none", max(self.windows_30d, self.windows_same_hour))
        per_window = history.totals.get(metric, 0) / history.windows
        return Baseline(per_window, history.source, history.windows)


@dataclass(frozen=True)
class Finding:
    """A rule's verdict that this window breaches: what an anomaly is made of."""

    rule: str
    scope: str
    severity: Severity
    title: str
    window_start: datetime
    evidence: dict[str, Any]
    # Raw events of these types in [sample_since, window end) illustrate the finding.
    sample_types: tuple[str, ...] = ()
    sample_since: datetime | None = None
    # A finding about more than its 5-minute window (a webhook gap spans hours) ends here; it
    # is still keyed by window_start, so re-recording it is a no-op.
    window_end: datetime | None = None

    @property
    def span(self) -> tuple[datetime, datetime]:
        """[first, end) of the breaching span: its raw events illustrate and diagnose it."""
        return self.sample_since or self.window_start, self.window_start + WINDOW

    @classmethod
    def of_account(
        cls, rule: str, start: datetime, severity: Severity, title: str, **rest: Any
    ) -> Finding:
        """A finding about the whole account (scope `all`) in the window starting at `start`."""
        return cls(rule=rule, scope="all", severity=severity, title=title, window_start=start,
                   **rest)  # fmt: skip
