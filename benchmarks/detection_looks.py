"""Early looks for benchmarks/detection.py: every window of a day also judged while still open,
at minutes 1 to 4, by the product's own `looks.judge`, as the open-window sensor judges it.

The sensor rolls up the open window on its events so far and loads it with its 30-minute and
2-hour sums and baselines. Doing that per look would be 34,560 loads a month; here one
statement per day counts every window's events before each minute (the rollup's own SQL,
metrics.ROLL_UP_METRICS, binned per look minute), the day's closed windows are loaded once,
and each look's Window is the closed one with the open window's partial counts in place of its
own: current = partial, 30-minute and 2-hour sums = the full sums minus the full window plus the
partial one (their earlier windows are closed and complete at look time), baselines unchanged.
Minute 5 (the whole window) is counted too and must equal the rollup: the check that the
partial counts are the rollup's.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from statistics import median

from psycopg import Connection

from sentinelops.windows import BIN, STEP, WINDOW
from sentinelops_pipelines import looks
from sentinelops_pipelines.rules.definitions import RuleBook
from sentinelops_pipelines.rules.metrics import PROCESSING_CODES
from sentinelops_pipelines.rules.model import Window
from sentinelops_pipelines.rules.significance import LOOKS_PER_WINDOW
from sentinelops_pipelines.storage import metrics

MINUTE = timedelta(minutes=1)
LOOK_AFTER = timedelta(seconds=5)  # a look runs a few seconds past its minute
CHECKED = LOOKS_PER_WINDOW + 1  # the whole window: must equal the rollup


def _replaced(text: str, old: str, new: str) -> str:
    assert old in text, f"metrics SQL changed: {old!r} not found; update detection_looks.py"
    return text.replace(old, new, 1)


def _partial_sql() -> str:
    """ROLL_UP_METRICS's counts per window and look minute m (events before start + m min)."""
    events = _replaced(metrics.EVENTS_IN_RANGE, "ev AS (", "ev_all AS (")
    events = _replaced(events, "SELECT id, type,", "SELECT id, type, created,")
    found = re.search(
        r"by_created AS \((.*?)\n\s*FROM ev GROUP BY window_start\n\)", metrics.ROLL_UP_METRICS,
        re.S,
    )  # fmt: skip
    assert found, "metrics.ROLL_UP_METRICS changed: by_created not found"
    counts = _replaced(found.group(1), "SELECT window_start,", "SELECT window_start, look,")
    received = f"{BIN.format(col='received_at')} AS window_start, received_at"
    within = "received_at >= %(start)s AND received_at < %(end)s"
    before = "{t}.{c} < {t}.window_start + k.m * interval '1 minute'"
    return f"""
WITH {events},
ev AS (
    SELECT ev_all.*, k.m AS look FROM ev_all
      JOIN generate_series(1, {CHECKED}) AS k(m) ON {before.format(t="ev_all", c="created")}
),
windows AS (
    SELECT w AS window_start, k.m AS look
      FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - {STEP}, {STEP}) AS w
     CROSS JOIN generate_series(1, {CHECKED}) AS k(m)
),
by_created AS ({counts}
      FROM ev GROUP BY window_start, look
),
received AS (SELECT {received} FROM stripe_events WHERE {within}),
by_received AS (
    SELECT window_start, k.m AS look, count(*) AS events_received FROM received r
      JOIN generate_series(1, {CHECKED}) AS k(m) ON {before.format(t="r", c="received_at")}
     GROUP BY 1, 2
),
rejected AS (SELECT {received} FROM webhook_rejections WHERE {within}),
invalid AS (
    SELECT window_start, k.m AS look, count(*) AS invalid_attempts FROM rejected r
      JOIN generate_series(1, {CHECKED}) AS k(m) ON {before.format(t="r", c="received_at")}
     GROUP BY 1, 2
)
SELECT w.window_start, w.look, {", ".join(f"coalesce({c}, 0)" for c in metrics.METRICS)}
  FROM windows w
  LEFT JOIN by_created USING (window_start, look)
  LEFT JOIN by_received USING (window_start, look)
  LEFT JOIN invalid USING (window_start, look)
"""


PARTIAL = _partial_sql()


def partial_counts(
    conn: Connection, start: datetime, end: datetime
) -> dict[tuple[datetime, int], dict[str, int]]:
    """Each window's counts in [start, end) over its first m minutes, m = 1 .. 5."""
    params = {
        "start": start, "end": end, "until": end, "processing": sorted(PROCESSING_CODES)
    }  # fmt: skip
    return {
        (row[0], row[1]): dict(zip(metrics.METRICS, map(int, row[2:]), strict=True))
        for row in conn.execute(PARTIAL, params)
    }


def at_look(full: Window, partial: dict[str, int], minutes: int) -> Window:
    """The window as the open-window sensor sees it `minutes` into it."""

    def swapped(sums: dict[str, int]) -> dict[str, int]:
        return {m: v - full.current.get(m, 0) + partial[m] for m, v in sums.items()}

    # `amounts` stay the closed window's: only early-look rules judge a look (failure rate,
    # integrity), and they do not read them.
    return replace(
        full, current=dict(partial), last_30m=swapped(full.last_30m),
        last_2h=swapped(full.last_2h), look_minutes=minutes,
    )  # fmt: skip


@dataclass
class LookStats:
    """What the looks did over the month."""

    looks: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # record()'s, per look finding
    opened: dict[int, tuple[datetime, int]] = field(default_factory=dict)  # id: (window, m)
    unconfirmed_marked: int = 0  # the closed evaluation's count (Evaluated.unconfirmed)
    seconds: float = 0.0
    # Filled after the month from anomaly_windows (windows()):
    confirmed_windows: int = 0  # found by a look, confirmed by the closed window
    unconfirmed_windows: int = 0  # found by a look, not confirmed
    pending_windows: int = 0  # still only a look's (should be none)
    closed_first: dict[int, datetime | None] = field(default_factory=dict)  # id: end
    only_unconfirmed: set[int] = field(default_factory=set)  # incidents of unconfirmed only

    def _lead(self, anomaly_id: int) -> float | None:
        """Minutes from the look that opened it to the end of its first closed breach."""
        ws, m = self.opened[anomaly_id]
        end = self.closed_first.get(anomaly_id)
        return None if end is None else (end - (ws + m * MINUTE)).total_seconds() / 60

    def early(self) -> list[int]:
        """The incidents a look opened before any of their windows closed breaching. A day's
        looks run before its closed pass, so a look may open an incident an earlier window's
        closed verdict had found already (lead <= 0): in production that window's pass, run
        as it closes, comes first, and the look only extends the incident; not counted."""
        return [i for i in self.opened if (lead := self._lead(i)) is None or lead > 0]

    def before_close(self) -> list[float]:
        """Minutes before the close of the window it looked at, per early-found incident."""
        return [float(5 - self.opened[i][1]) for i in self.early()]

    def lead(self) -> list[float]:
        """Minutes before the end of the incident's first closed breach, per early-found
        incident that has one."""
        return [x for i in self.early() if (x := self._lead(i)) is not None]


def _median(values: list[float]) -> str:
    return f"{median(values):.1f}" if values else "-"


WINDOWS = """
SELECT anomaly_id, window_start, evidence ? 'early_look', evidence ? 'unconfirmed',
       evidence ? 'look'
  FROM anomaly_windows WHERE rule = ANY(%(rules)s)
"""


def windows(conn: Connection, book: RuleBook, stats: LookStats) -> None:
    """Count the windows the looks found, and each incident's first closed breach."""
    closed: dict[int, list[datetime]] = {}
    provisional: dict[int, int] = Counter()
    for anomaly_id, start, confirmed, unconfirmed, pending in conn.execute(
        WINDOWS, {"rules": list(looks.early_rules(book))}
    ):
        stats.confirmed_windows += confirmed
        stats.unconfirmed_windows += unconfirmed
        stats.pending_windows += pending and not confirmed
        if unconfirmed or pending:
            provisional[anomaly_id] += 1
        else:
            closed.setdefault(anomaly_id, []).append(start + WINDOW)
    stats.closed_first = {i: min(closed[i]) if i in closed else None for i in stats.opened}
    stats.only_unconfirmed = {i for i in provisional if i not in closed}


def look_day(conn: Connection, book: RuleBook, start: datetime, end: datetime,
             stats: LookStats) -> None:  # fmt: skip
    """Every window of [start, end) looked at minutes 1 .. 4, window by window, in the caller's
    transaction (the closed evaluation of the day comes after, and confirms or marks them)."""
    partial = partial_counts(conn, start, end)
    full, _ = metrics.load_windows_for_evaluation(conn, start, end)
    newest = conn.execute("SELECT coalesce(max(id), 0) FROM anomalies").fetchone()[0]  # type: ignore[index]
    for window in full:
        whole = partial[(window.start, CHECKED)]
        assert whole == window.current, f"partial counts differ from the rollup at {window.start}"
        for m in range(1, LOOKS_PER_WINDOW + 1):
            now = window.start + m * MINUTE + LOOK_AFTER
            seen = looks.judge(
                conn, book, at_look(window, partial[(window.start, m)], m), now, "medium"
            )
            stats.looks += 1
            stats.outcomes.update(seen.outcomes)
            if seen.outcomes["opened"]:
                for (anomaly_id,) in conn.execute(
                    "SELECT id FROM anomalies WHERE id > %s ORDER BY id", (newest,)
                ):
                    stats.opened[anomaly_id] = (window.start, m)
                    newest = anomaly_id


def summary_rows(shapes: list[tuple[str, LookStats]], false_ids: dict[str, set[int]]) -> list:
    """The looks' table: one row per shape."""
    rows = [[
        "early looks", "looks", "findings", "opened by a look", "found early", "of them false",
        "only unconfirmed", "windows confirmed", "unconfirmed", "min before close (median)",
        "min before 1st closed breach (median)", "s",
    ]]  # fmt: skip
    for shape, s in shapes:
        early = set(s.early())
        rows.append([
            shape, f"{s.looks:,}", str(sum(s.outcomes.values())), str(len(s.opened)),
            str(len(early)), str(len(early & false_ids.get(shape, set()))),
            str(len(s.only_unconfirmed)), str(s.confirmed_windows), str(s.unconfirmed_windows),
            _median(s.before_close()), _median(s.lead()), f"{s.seconds:.0f}",
        ])  # fmt: skip
    return rows
