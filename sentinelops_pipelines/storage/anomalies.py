"""SQL that turns findings into anomalies: one anomaly per incident, every re-run a no-op.

Each breaching (rule, scope, window) is a row of `anomaly_windows` with a primary key, so a
window is counted once however often it is evaluated. A breach within the quiet gap of an
unresolved anomaly of the same rule and scope extends it (its window grows, its severity may
rise, never fall); otherwise it opens a new one. An advisory lock per (rule, scope) makes
concurrent runs queue instead of racing.

An early look at a window still open (looks.py) records its breach like any other, marked
`look` in the window's evidence: the same incident, the same window row. The closed window's
verdict then replaces that evidence (`confirmed`, the window counted once), or, when the closed
window does not breach, early.py marks it unconfirmed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Literal

from psycopg import Connection
from psycopg.types.json import Jsonb

from sentinelops.severity import higher, rank
from sentinelops.slack import outbox as notifications
from sentinelops.windows import WINDOW
from sentinelops_pipelines.rules.model import Finding

Outcome = Literal["opened", "extended", "escalated", "unchanged", "confirmed", "unconfirmed"]
ACTOR = "rules"

SAMPLE_IDS = """
SELECT id FROM stripe_events
 WHERE created >= %(since)s AND created < %(end)s AND type = ANY(%(types)s)
 ORDER BY created, id LIMIT 5
"""

FIND_INCIDENT = """
SELECT id, severity, cleared_at FROM anomalies
 WHERE rule = %(rule)s AND scope = %(scope)s AND status <> 'resolved'
   AND window_start <= %(end)s + %(gap)s AND window_end >= %(start)s - %(gap)s
 ORDER BY window_end DESC LIMIT 1
   FOR UPDATE
"""

# An anomaly opened while a silence covers its rule and scope is recorded as usual, marked
# with that silence: the outbox holds its alert until the silence ends (sentinelops/slack).
OPEN_ANOMALY = """
INSERT INTO anomalies (rule, scope, severity, title, window_start, window_end, evidence,
                       silenced_by)
VALUES (%(rule)s, %(scope)s, %(severity)s, %(title)s, %(start)s, %(end)s, %(evidence)s,
        silence_covering(%(rule)s, %(scope)s, now()))
RETURNING id
"""

# An incident opened before its kind could be told (too few failures yet) takes the first
# diagnosis that tells it, at the same severity: the title should say card testing once the
# events do, not only when it escalates.
UNCLASSIFIED = (
    "coalesce(evidence #>> '{diagnosis,classification}', 'unclassified') = 'unclassified'"
)

EXTEND_ANOMALY = f"""
UPDATE anomalies
   SET window_start = least(window_start, %(start)s),
       window_end = greatest(window_end, %(end)s),
       severity = %(severity)s,
       cleared_at = CASE WHEN %(back)s THEN NULL ELSE cleared_at END,  -- _extend decides
       title = CASE WHEN %(escalated)s OR %(refines)s AND {UNCLASSIFIED} THEN %(title)s
                    ELSE title END,
       evidence = CASE WHEN %(escalated)s OR %(refines)s AND {UNCLASSIFIED} THEN %(evidence)s
                       ELSE evidence END
                  || jsonb_build_object('windows_breached',
                         (SELECT count(*) FROM anomaly_windows WHERE anomaly_id = %(id)s)),
       updated_at = now()
 WHERE id = %(id)s
"""

ADD_WINDOW = """
INSERT INTO anomaly_windows (rule, scope, window_start, anomaly_id, severity, evidence)
VALUES (%(rule)s, %(scope)s, %(start)s, %(id)s, %(severity)s, %(evidence)s)
"""

OPENING = """
INSERT INTO anomaly_history (anomaly_id, from_status, to_status, actor, note)
VALUES (%(id)s, NULL, 'open', %(actor)s, %(note)s)
"""


def sample_event_ids(conn: Connection, finding: Finding) -> list[str]:
    if not finding.sample_types:
        return []
    since, end = finding.span
    rows = conn.execute(
        SAMPLE_IDS, {"since": since, "end": end, "types": list(finding.sample_types)}
    ).fetchall()
    return [row[0] for row in rows]


def in_lock_order(findings: Iterable[Finding]) -> list[Finding]:
    """Findings in the order record() must take their incidents' locks: by rule and scope, then
    window. Two overlapping runs that met incidents in different orders (each run walks its own
    windows in time) would otherwise each hold one incident's lock and wait for the other's."""
    return sorted(findings, key=lambda f: (f.rule, f.scope, f.window_start))


def record(
    conn: Connection,
    finding: Finding,
    quiet_gap: timedelta,
    alert_min_severity: str = "medium",
    announce: list[tuple[int, str]] | None = None,
    diagnose: Callable[[Finding], Finding] | None = None,
    late_after: timedelta | None = None,
) -> Outcome:
    """Write one finding; the caller's transaction commits it, with the Slack notification an
    opening at or above `alert_min_severity`, or any escalation, enqueues (never for a demo).

    With `announce`, each opening or escalation is appended to it as (anomaly id, outcome)
    instead, for the caller to announce once it knows how the incident ends up (catch_up.py).
    `diagnose` (and the sample events) run only for a finding that will be written: a window
    already recorded at this severity or worse is left at once. A breach after the incident
    cleared brings it back, said in its thread unless the breach ended more than `late_after`
    ago (history, not news: the catch-up's rule)."""

    def enqueue(anomaly_id: int, kind: notifications.Kind) -> None:
        if announce is not None:
            announce.append((anomaly_id, kind))
        else:
            notifications.enqueue_anomaly(conn, anomaly_id, kind, alert_min_severity)

    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
        (f"anomaly:{finding.rule}:{finding.scope}",),
    )
    start, end = finding.window_start, finding.window_end or finding.window_start + WINDOW
    key = {"rule": finding.rule, "scope": finding.scope, "start": start}
    seen = conn.execute(
        f"SELECT anomaly_id, severity, {PROVISIONAL} FROM anomaly_windows"
        " WHERE rule = %(rule)s AND scope = %(scope)s AND window_start = %(start)s",
        key,
    ).fetchone()
    early = "look" in finding.evidence
    confirming = seen is not None and seen[2] and not early
    if (
        seen is not None
        and not confirming
        and (rank(finding.severity) <= rank(seen[1]) or early and not seen[2])
    ):
        return "unchanged"  # an early look never overrules the closed window's verdict
    if diagnose is not None:
        finding = diagnose(finding)
    evidence = {**finding.evidence, "window_start": start.isoformat()}
    if "sample_event_ids" not in evidence:
        evidence["sample_event_ids"] = sample_event_ids(conn, finding)
    if seen is not None and confirming:
        outcome = _confirm(conn, seen[0], finding, evidence, key, end, late_after, seen[1])
        if outcome == "escalated":
            enqueue(seen[0], outcome)
        return outcome
    if seen is not None:
        anomaly_id = seen[0]
        # A late event made an evaluated window worse: keep the worse verdict.
        conn.execute(
            "UPDATE anomaly_windows SET severity = %(severity)s, evidence = %(evidence)s"
            " WHERE rule = %(rule)s AND scope = %(scope)s AND window_start = %(start)s",
            {**key, "severity": finding.severity, "evidence": Jsonb(evidence)},
        )
        current, cleared_at = conn.execute(
            "SELECT severity, cleared_at FROM anomalies WHERE id = %s FOR UPDATE", (anomaly_id,)
        ).fetchone()  # type: ignore[misc]
        if rank(finding.severity) <= rank(current):
            return "unchanged"
        outcome = _extend(conn, anomaly_id, current, cleared_at, finding, evidence, start, end,
                          late_after)  # fmt: skip
        if outcome == "escalated":
            enqueue(anomaly_id, outcome)
        return outcome
    incident = conn.execute(FIND_INCIDENT, {**key, "end": end, "gap": quiet_gap}).fetchone()
    if incident is None:
        anomaly_id = conn.execute(
            OPEN_ANOMALY,
            {
                **key,
                "end": end,
                "severity": finding.severity,
                "title": finding.title,
                "evidence": Jsonb({**evidence, "windows_breached": 1}),
            },
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            ADD_WINDOW,
            {**key, "id": anomaly_id, "severity": finding.severity, "evidence": Jsonb(evidence)},
        )
        conn.execute(OPENING, {"id": anomaly_id, "actor": ACTOR, "note": finding.title})
        enqueue(anomaly_id, "opened")
        return "opened"
    anomaly_id, severity, cleared_at = incident
    conn.execute(
        ADD_WINDOW,
        {**key, "id": anomaly_id, "severity": finding.severity, "evidence": Jsonb(evidence)},
    )
    outcome = _extend(conn, anomaly_id, severity, cleared_at, finding, evidence, start, end,
                      late_after)  # fmt: skip
    if outcome == "escalated":
        enqueue(anomaly_id, outcome)
    return outcome


# The window's verdict so far came from an early look, or was one the closed window found no
# breach in (early.py), which a late event may still confirm. A closed verdict below the look's
# (`_confirm`) is the closed window's own: it carries `early_look`, and is not provisional.
PROVISIONAL = "(evidence ? 'look' OR evidence ? 'unconfirmed' AND NOT evidence ? 'early_look')"

# The closed window's verdict on a window an early look found: the window keeps its row (the
# incident's count does not change) and takes this verdict and evidence, with the look it
# confirms. The incident takes the evidence too when its evidence was that window's.
CONFIRM_WINDOW = """
UPDATE anomaly_windows
   SET severity = %(severity)s,
       evidence = %(evidence)s || jsonb_build_object('early_look',
                  coalesce(evidence -> 'look', evidence #> '{unconfirmed,look}'))
 WHERE rule = %(rule)s AND scope = %(scope)s AND window_start = %(start)s
RETURNING evidence
"""

CONFIRM_ANOMALY = """
UPDATE anomalies
   SET evidence = %(evidence)s || jsonb_build_object('windows_breached',
                      (SELECT count(*) FROM anomaly_windows WHERE anomaly_id = %(id)s)),
       title = %(title)s, updated_at = now()
 WHERE id = %(id)s AND evidence ->> 'window_start' = %(start_iso)s
"""


def _confirm(conn: Connection, anomaly_id: int, finding: Finding, evidence: dict, key: dict,
             end: datetime, late_after: timedelta | None, looked: str) -> Outcome:  # fmt: skip
    """The closed window breaches where an early look found it, at `finding.severity`; the look
    said `looked`. At that severity or above, the look is confirmed: the window's and (if it
    was that window's) the incident's evidence become the closed window's, and a worse verdict
    escalates. Below it, the breach is confirmed but the look's severity is not: the window
    keeps the closed verdict, its evidence says `unconfirmed` with both severities, and an
    announced incident's thread is told (severity never falls: the alert went out at it)."""
    current, cleared_at = conn.execute(
        "SELECT severity, cleared_at FROM anomalies WHERE id = %s FOR UPDATE", (anomaly_id,)
    ).fetchone()  # type: ignore[misc]
    lower = rank(finding.severity) < rank(looked)
    if lower:
        evidence = {**evidence, "unconfirmed": {"severity": finding.severity,
                                                "look_severity": looked}}  # fmt: skip
    (confirmed,) = conn.execute(
        CONFIRM_WINDOW, {**key, "severity": finding.severity, "evidence": Jsonb(evidence)}
    ).fetchone()  # type: ignore[misc]
    if lower:
        unconfirmed = {**confirmed["unconfirmed"], "look": confirmed["early_look"]}
        confirmed["unconfirmed"] = unconfirmed
        notifications.enqueue_notice(
            conn, anomaly_id, "unconfirmed", key=key["start"].isoformat(),
            payload={**unconfirmed, "window_start": key["start"].isoformat()},
        )  # fmt: skip
    if rank(finding.severity) > rank(current):
        _extend(conn, anomaly_id, current, cleared_at, finding, confirmed, key["start"], end,
                late_after)  # fmt: skip
        return "escalated"
    conn.execute(
        CONFIRM_ANOMALY,
        {"id": anomaly_id, "evidence": Jsonb(confirmed), "title": finding.title,
         "start_iso": key["start"].isoformat()},
    )  # fmt: skip
    return "unconfirmed" if lower else "confirmed"


def _extend(conn: Connection, anomaly_id: int, severity: str, cleared_at: datetime | None,
            finding: Finding, evidence: dict, start: datetime, end: datetime,
            late_after: timedelta | None = None) -> Outcome:  # fmt: skip
    escalated = rank(finding.severity) > rank(severity)
    # A breach after the incident cleared brings it back (a late verdict on a window before
    # that moment does not); said in its thread unless it is history, not news.
    back = cleared_at is not None and end > cleared_at
    news = late_after is None or end >= datetime.now(UTC) - late_after
    if back and news and cleared_at is not None:
        # Back before anyone resolved it: the same incident, and its thread says so.
        notifications.enqueue_notice(
            conn, anomaly_id, "recurred", key=start.isoformat(),
            payload={"at": start.isoformat(), "severity": higher(finding.severity, severity),
                     "cleared_at": cleared_at.isoformat()},
        )  # fmt: skip
    kind = finding.evidence.get("diagnosis", {}).get("classification")
    conn.execute(
        EXTEND_ANOMALY,
        {"id": anomaly_id, "start": start, "end": end, "escalated": escalated, "back": back,
         "refines": kind not in (None, "unclassified") and finding.severity == severity,
         "severity": higher(finding.severity, severity), "title": finding.title,
         "evidence": Jsonb(evidence)},
    )  # fmt: skip
    return "escalated" if escalated else "extended"


DUPLICATE_OPEN = """
SELECT a.rule, a.scope, a.id, b.id
  FROM anomalies a JOIN anomalies b
    ON a.rule = b.rule AND a.scope = b.scope AND a.id < b.id
   AND b.window_start <= a.window_end + %(gap)s AND b.window_end >= a.window_start - %(gap)s
 WHERE a.status <> 'resolved' AND b.status <> 'resolved'
 LIMIT 20
"""


def duplicate_open_incidents(conn: Connection, quiet_gap: timedelta) -> list[tuple]:
    """Pairs of unresolved anomalies that should have been one incident (should be none)."""
    return conn.execute(DUPLICATE_OPEN, {"gap": quiet_gap}).fetchall()


def anomaly_for_window(
    conn: Connection, rule: str, scope: str, window_start: datetime
) -> int | None:
    """The anomaly a breached window belongs to, if that window breached."""
    row = conn.execute(
        "SELECT anomaly_id FROM anomaly_windows"
        " WHERE rule = %s AND scope = %s AND window_start = %s",
        (rule, scope, window_start),
    ).fetchone()
    return row[0] if row else None
