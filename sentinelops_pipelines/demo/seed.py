"""`sentinelops seed-demo`: a fixed set of demo anomalies, recorded like real ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from sentinelops_pipelines.rules.model import Finding
from sentinelops_pipelines.storage import anomalies

DEMO_START = datetime(2026, 1, 1, tzinfo=UTC)
# (rule, severity, title, minutes after DEMO_START): one of each severity, fixed so re-seeding
# finds them again instead of adding more.
DEMO_ANOMALIES = [
    (
        "payment_failure_spike",
        "high",
        "[demo] Payment failure rate 58% over 30 min (70 of 120 payments; usual 4%)",
        0,
    ),
    ("refund_spike", "medium", "[demo] 14 refunds in 30 min (usually 1.2)", 60),
    ("webhook_integrity", "low", "[demo] 7 webhook attempts failed verification in 5 min", 120),
]


def seed_demo(url: str) -> list[int]:
    """Create the demo anomalies if missing; their ids. Idempotent: keyed like real ones."""
    ids = []
    with psycopg.connect(url) as conn:
        for rule, severity, title, minutes in DEMO_ANOMALIES:
            start = DEMO_START + timedelta(minutes=minutes)
            finding = Finding(
                rule=rule,
                scope="demo",
                severity=severity,  # type: ignore[arg-type]
                title=title,  # type: ignore[arg-type]
                window_start=start,
                evidence={
                    "_demo": True,
                    "note": "created by `sentinelops seed-demo`",
                    "sample_event_ids": [],
                },
            )
            anomalies.record(conn, finding, timedelta(0))
            anomaly_id = anomalies.anomaly_for_window(conn, rule, "demo", start)
            assert anomaly_id is not None  # just recorded
            ids.append(anomaly_id)
    return ids
