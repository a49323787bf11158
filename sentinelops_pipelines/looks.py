"""Early looks: the 5-minute window still open, judged once a minute on its events so far.

The rules where waiting costs money (payment failure spikes, webhook integrity: `early_looks`
in their definitions) are judged as the window fills, so a broken checkout is known a minute
after it breaks, not when its window closes. The 5-minute partitions have no partition for the
open window (an `end_offset` would change backfills and the UI), so a look is not a run: the
`open_window_sensor` makes one every minute and reports it as an observation of `anomalies`.

A look is a partial decision, kept partial:
- it records a breach exactly as the closed window would (the same incident, the same window
  row, marked `look`), so the closed window's evaluation confirms it or marks it unconfirmed
  (anomalies.py, storage/early.py), never counts it twice;
- each of the LOOKS_PER_WINDOW looks decides at its share of the rule's false-alarm budget
  (significance.look_share), so repeated looks do not multiply false alarms;
- it rolls up the open window but never marks it evaluated (coverage and lag ignore it) and
  never clears an incident.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from psycopg import Connection

from sentinelops.windows import WINDOW, window_floor
from sentinelops_pipelines.evaluation import record_all
from sentinelops_pipelines.rules.definitions import RuleBook, RuleDefinition
from sentinelops_pipelines.rules.engine import evaluate
from sentinelops_pipelines.rules.model import Window
from sentinelops_pipelines.rules.readings import Reading, readings
from sentinelops_pipelines.rules.significance import LOOKS_PER_WINDOW
from sentinelops_pipelines.storage import metrics as metrics_sql

MINUTE = timedelta(minutes=1)
JUDGED = """
SELECT evaluated_snapshot IS NOT NULL FROM window_metrics WHERE window_start = %(start)s
   FOR UPDATE
"""


@dataclass
class Look:
    window_start: datetime
    minutes: int  # whole minutes of the window seen
    outcomes: Counter[str] = field(default_factory=Counter)
    by_rule: Counter[str] = field(default_factory=Counter)
    announced: list[int] = field(default_factory=list)  # opened or escalated: deliver now
    readings: list[Reading] = field(default_factory=list)  # what each rule read (not stored)


def early_rules(book: RuleBook) -> dict[str, RuleDefinition]:
    return {n: r for n, r in book.enabled().items() if getattr(r, "early_looks", False)}


def look_minutes(now: datetime) -> int:
    """Whole minutes of the open window seen at `now`; a look is made from 1 to 4."""
    return int((now - window_floor(now)) // MINUTE)


def look(
    conn: Connection,
    book: RuleBook,
    now: datetime,
    notify_from: str,
    until: datetime | None = None,
) -> Look | None:
    """Judge the window open at `now` with its early-look rules, in the caller's transaction;
    None when there is nothing to look at (no such rule, or less than a minute of it seen).
    `until` counts only the events before it (a replay of the past; the stack counts all)."""
    start, minutes = window_floor(now), look_minutes(now)
    if not early_rules(book) or not 1 <= minutes <= LOOKS_PER_WINDOW:
        return None
    # The window's rollup row, locked until this look commits: a closed pass that judges it
    # meanwhile waits for the look before marking it evaluated (then sees its breaches, to
    # confirm or not); one that already did leaves nothing to look at.
    judged = conn.execute(JUDGED, {"start": start}).fetchone()
    if judged is not None and judged[0]:
        return None
    metrics_sql.roll_up(conn, start, start + WINDOW, until)
    loaded, _ = metrics_sql.load_windows_for_evaluation(conn, start, start + WINDOW)
    return judge(conn, book, replace(loaded[0], look_minutes=minutes), now, notify_from)


def judge(
    conn: Connection, book: RuleBook, window: Window, now: datetime, notify_from: str
) -> Look:
    """One early look: the early-look rules over `window` (its `look_minutes` set), each
    breach recorded as the closed window would record it, marked as this look's."""
    rules = early_rules(book)
    assert window.look_minutes is not None, "an early look judges a window still open"
    result = Look(window.start, window.look_minutes)
    seen = {"minutes": window.look_minutes, "at": now.isoformat()}
    findings = [f for name, rule in rules.items() for f in evaluate(name, rule, window)]
    for finding in findings:
        finding.evidence["look"] = seen
    result.outcomes, result.by_rule, result.announced, _ = record_all(
        conn, book, findings, notify_from
    )
    result.readings = [r for name, rule in rules.items() for r in readings(name, rule, window)]
    return result


def described(look: Look) -> dict[str, Any]:
    """A look as Dagster metadata: the window, how much of it, what each rule read."""
    return {
        "window_start": look.window_start.isoformat(),
        "minutes_seen": look.minutes,
        "anomalies_opened": look.outcomes["opened"],
        "anomalies_escalated": look.outcomes["escalated"],
        "findings_already_recorded": look.outcomes["unchanged"],
        "by_rule": dict(look.by_rule),
        "readings": {
            f"{r.rule}:{r.measure}": {"observed": r.observed, "bound": r.bound}
            for r in look.readings
        },
    }
