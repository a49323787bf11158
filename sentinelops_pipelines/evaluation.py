"""One evaluation pass over a range of 5-minute windows, in the caller's transaction: every
enabled rule over the windows, each finding recorded once (diagnosed only when it is written),
incidents found late announced together, what each rule read in each window stored (the
console's charts: rule_readings), early breaches (looks.py) confirmed or marked unconfirmed,
the windows marked evaluated, and incidents quiet for a whole quiet gap since cleared. The
`anomalies` asset runs it; so does benchmarks/detection.py, so the benchmark judges what the
product does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from psycopg import Connection

from sentinelops_pipelines.rules.definitions import RuleBook
from sentinelops_pipelines.rules.engine import evaluate
from sentinelops_pipelines.rules.model import Finding
from sentinelops_pipelines.rules.readings import readings
from sentinelops_pipelines.storage import anomalies as anomaly_sql
from sentinelops_pipelines.storage import catch_up, clearing, early
from sentinelops_pipelines.storage import diagnosis as diagnosis_sql
from sentinelops_pipelines.storage import metrics as metrics_sql
from sentinelops_pipelines.storage import readings as readings_sql


@dataclass
class Evaluated:
    windows: int
    outcomes: Counter[str] = field(default_factory=Counter)  # record()'s outcome per finding
    by_rule: Counter[str] = field(default_factory=Counter)  # "rule:outcome", changes only
    found_late: int = 0
    readings: int = 0  # rows of rule_readings written
    cleared: int = 0  # incidents that cleared (quiet for a whole gap)
    # Early breaches (looks.py) these closed windows did not confirm, or confirmed at a lower
    # severity than the look's.
    unconfirmed: int = 0
    announced: list[int] = field(default_factory=list)  # opened or escalated: deliver now


def record_all(
    conn: Connection, book: RuleBook, findings: list[Finding], notify_from: str
) -> tuple[Counter[str], Counter[str], list[int], int]:
    """Record findings as one pass does (the closed windows' or an early look's, looks.py):
    in lock order, each diagnosed only when written, the pass's openings and escalations
    announced together. Returns record()'s outcomes, the changes by rule ("rule:outcome"), the
    anomalies announced (to deliver now) and how many were found late."""
    enabled = book.enabled()
    gap = timedelta(minutes=book.quiet_gap_minutes)
    late_after = timedelta(minutes=book.found_late_after_minutes)

    # What kind of spike each one is, from its breaching span's raw events only; record() asks
    # only for findings it will write.
    def diagnose(finding: Finding) -> Finding:
        return diagnosis_sql.diagnosed(conn, finding, enabled[finding.rule])

    outcomes: Counter[str] = Counter()
    by_rule: Counter[str] = Counter()
    announced: list[tuple[int, str]] = []
    for finding in anomaly_sql.in_lock_order(findings):
        outcome = anomaly_sql.record(
            conn, finding, gap, notify_from, announced, diagnose, late_after=late_after
        )
        outcomes[outcome] += 1
        if outcome != "unchanged":
            by_rule[f"{finding.rule}:{outcome}"] += 1
    found_late = catch_up.announce(conn, announced, notify_from, late_after)
    return outcomes, by_rule, sorted({anomaly_id for anomaly_id, _ in announced}), found_late


def evaluate_range(
    conn: Connection,
    book: RuleBook,
    start: datetime,
    end: datetime,
    notify_from: str,
    run_id: str | None = None,
    now: datetime | None = None,
) -> Evaluated:
    """Judge the windows in [start, end) with `book`; openings below `notify_from` are
    recorded but not posted. `run_id`, the Dagster run's, goes into the evidence it writes,
    so the console links an incident to the run that opened (or escalated) it. `now` (the
    database's clock when None) decides which windows are closed when clearing."""
    enabled = book.enabled()
    gap = timedelta(minutes=book.quiet_gap_minutes)
    windows, snapshots = metrics_sql.load_windows_for_evaluation(conn, start, end)
    findings = [
        f for w in windows for name, rule in enabled.items() for f in evaluate(name, rule, w)
    ]
    if run_id is not None:
        for finding in findings:
            finding.evidence["dagster_run_id"] = run_id

    result = Evaluated(len(windows))
    recorded = record_all(conn, book, findings, notify_from)
    result.outcomes, result.by_rule, result.announced, result.found_late = recorded
    result.readings = readings_sql.write(
        conn,
        [r for w in windows for name, rule in enabled.items() for r in readings(name, rule, w)],
    )
    # Same transaction as the anomalies: a run that dies leaves its windows stale.
    metrics_sql.mark_evaluated(conn, snapshots)
    # Early looks at these windows that their closed verdict did not confirm: after the
    # readings (the notice says what the closed window read), and after marking the windows
    # evaluated, which waits for a look still holding a window's row (looks.py).
    marked = early.mark_unconfirmed(conn, start, end, list(enabled))
    result.unconfirmed = len(marked) + result.outcomes["unconfirmed"]  # + breached lower
    # With these windows judged, incidents quiet for a whole gap are cleared (any of them: an
    # incident of another range may have been waiting for exactly these windows).
    judged = [name for name, rule in enabled.items() if rule.kind != "gap"]  # reconciliation's
    result.cleared = len(clearing.clear_quiet(conn, gap, judged, now))
    return result
