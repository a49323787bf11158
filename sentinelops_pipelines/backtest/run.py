"""The backtest itself: both rule books over the stored windows, in one read-only transaction.

No Dagster here (the `sentinelops` command imports this and must stay light), and nothing is
written: the transaction is read-only, so a write anywhere below fails instead of landing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from psycopg import Connection
from pydantic import ValidationError

from sentinelops.windows import window_floor
from sentinelops_pipelines.backtest.incidents import compare, group_incidents
from sentinelops_pipelines.backtest.report import Report, tabulate
from sentinelops_pipelines.rules.definitions import RuleBook, load_rules, parse_rules
from sentinelops_pipelines.rules.engine import evaluate
from sentinelops_pipelines.rules.model import Finding, Window
from sentinelops_pipelines.storage.metrics import load_windows
from sentinelops_pipelines.storage.summaries import DAY, NOT_DEMO

DEFAULT_DAYS = 30
# Windows are loaded a day at a time: each load computes its windows' 30-day baselines, so a
# month at once would hold every window and its sums in one result.
CHUNK = timedelta(days=1)

STORED = f"""
SELECT rule, {DAY} AS day, count(*)
  FROM anomalies
 WHERE window_start >= %(since)s AND window_start < %(until)s AND {NOT_DEMO}
 GROUP BY 1, 2
"""


class BacktestError(ValueError):
    """Input the backtest cannot run with: an unreadable or invalid rules file, a bad range."""


def _one_line(exc: ValueError) -> str:
    """load_rules' message on one line: pydantic's errors as `field: problem; …`."""
    cause = exc.__cause__
    if isinstance(cause, ValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in cause.errors())
        return str(exc).removesuffix(str(cause)) + problems
    return " ".join(str(exc).split())


def load_book(path: str | Path | None) -> RuleBook:
    """The rule book in `path` (None: the packaged rules.toml), validated as a run loads it."""
    try:
        return load_rules(Path(path) if path is not None else None)
    except OSError as exc:
        raise BacktestError(f"cannot read rules file {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise BacktestError(_one_line(exc)) from exc


def load_book_text(text: str) -> RuleBook:
    """A rule book given as TOML text (the Dagster job's `rules_toml`)."""
    try:
        return parse_rules(text, "rules_toml")
    except ValueError as exc:
        raise BacktestError(_one_line(exc)) from exc


def parse_moment(text: str, name: str) -> datetime:
    """YYYY-MM-DD (midnight UTC) or an ISO 8601 date and time (UTC when it names no zone)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BacktestError(
            f"{name} {text!r} is neither YYYY-MM-DD nor an ISO 8601 date and time"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def resolve_range(since: str | None, until: str | None) -> tuple[datetime, datetime]:
    """[since, until): until defaults to now (down to its 5-minute window), since to 30 days
    before until."""
    end = parse_moment(until, "until") if until else window_floor(datetime.now(UTC))
    start = parse_moment(since, "since") if since else end - timedelta(days=DEFAULT_DAYS)
    if start >= end:
        raise BacktestError(f"since ({start.isoformat()}) must be before until ({end.isoformat()})")
    return start, end


def stored_anomalies(
    conn: Connection, since: datetime, until: datetime
) -> dict[tuple[str, date], int]:
    """Anomalies recorded per rule and UTC day of their start (demo anomalies left out)."""
    rows = conn.execute(STORED, {"since": since, "until": until}).fetchall()
    return {(rule, day): n for rule, day, n in rows}


def _evaluator(current: RuleBook, candidate: RuleBook) -> Callable[[Window], tuple[list, list]]:
    """Both books' findings for one window; a rule defined alike in both is evaluated once."""
    ours, theirs = current.enabled(), candidate.enabled()
    shared = {name for name, rule in theirs.items() if ours.get(name) == rule}

    def judge(w: Window) -> tuple[list[Finding], list[Finding]]:
        now: list[Finding] = []
        then: list[Finding] = []
        for name, rule in ours.items():
            found = evaluate(name, rule, w)
            now += found
            if name in shared:
                then += found
        for name, rule in theirs.items():
            if name not in shared:
                then += evaluate(name, rule, w)
        return now, then

    return judge


def run_backtest(
    conn: Connection,
    current: RuleBook,
    candidate: RuleBook,
    since: datetime,
    until: datetime,
    *,
    current_label: str,
    candidate_label: str,
) -> Report:
    """Judge the stored windows in [since, until) by both books, in memory, and compare the
    incidents they raise. `conn` must be outside a transaction: the backtest opens its own,
    read-only."""
    began = time.monotonic()
    judge = _evaluator(current, candidate)
    now: list[Finding] = []
    then: list[Finding] = []
    windows = 0
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        chunk = since
        while chunk < until:
            for w in load_windows(conn, chunk, min(chunk + CHUNK, until)):
                a, b = judge(w)
                now += a
                then += b
                windows += 1
            chunk += CHUNK
        stored = stored_anomalies(conn, since, until)
    before = group_incidents(now, timedelta(minutes=current.quiet_gap_minutes))
    after = group_incidents(then, timedelta(minutes=candidate.quiet_gap_minutes))
    differences = compare(before, after)
    rules = [*current.rules, *candidate.rules]
    return Report(
        since=since,
        until=until,
        current_rules=current_label,
        candidate_rules=candidate_label,
        windows=windows,
        seconds=time.monotonic() - began,
        rows=tabulate(rules, stored, before, after, differences),
        differences=differences,
    )
