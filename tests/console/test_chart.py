"""The incident chart reads the rules' per-window readings: every window of the range as a point,
or, over a long range, buckets that still show the window that fired."""

from __future__ import annotations

import re
from datetime import timedelta

from psycopg.types.json import Jsonb

from tests.webhook_service.test_anomalies_api import T0, add_anomaly


def store_readings(db, first, windows: int, spike_at: int) -> None:
    """failed_30m readings: 2 observed against a bound of 9, and 40 in window `spike_at`."""
    db.execute(
        "INSERT INTO rule_readings (rule, scope, measure, window_start, label, observed, expected,"
        " bound, bound_kind) SELECT 'payment_failure_spike', 'all', 'failed_30m',"
        " %(first)s + n * interval '5 minutes', 'failed payments in 30 min',"
        " CASE WHEN n = %(spike)s THEN 40 ELSE 2 END, 1.5, 9, 'above'"
        " FROM generate_series(0, %(windows)s - 1) AS n",
        {"first": first, "windows": windows, "spike": spike_at},
    )


def chart_of(html: str) -> tuple[int, list[str]]:
    points = int(re.search(r'data-points="(\d+)"', html)[1])
    over = re.findall(r'<circle class="point over"[^>]*><title>([^<]+)</title>', html)
    return points, over


def incident(db, hours: int) -> int:
    anomaly_id = add_anomaly(db, rule="payment_failure_spike")
    db.execute(
        "UPDATE anomalies SET window_end = window_start + %s, evidence = %s WHERE id = %s",
        (timedelta(hours=hours), Jsonb({"chart": {"measure": "failed_30m", "scope": "all"}}),
         anomaly_id),
    )  # fmt: skip
    return anomaly_id


def test_each_window_of_the_range_is_a_point(console, db):
    anomaly_id = incident(db, hours=1)
    # 6 h before the incident, 1 h of it, 6 h after: 13 h of windows, and some outside the range.
    store_readings(db, T0 - timedelta(hours=8), windows=18 * 12, spike_at=8 * 12 + 3)
    html = console.get(f"/console/incidents/{anomaly_id}").text
    points, over = chart_of(html)
    assert points == 13 * 12
    assert over == ["05-01 00:15: 40.0 (expected 1.5, bound 9.0)"]
    assert 'class="bound"' in html and 'class="expected"' in html and 'class="shade"' in html


def test_a_long_incident_is_bucketed_and_still_shows_what_fired(console, db):
    anomaly_id = incident(db, hours=72)
    store_readings(db, T0 - timedelta(hours=6), windows=84 * 12, spike_at=40 * 12 + 7)
    points, over = chart_of(console.get(f"/console/incidents/{anomaly_id}").text)
    assert points <= 288 and points == 84 * 12 // 4  # 4 windows a bucket
    assert len(over) == 1 and ": 40.0 (" in over[0]


def test_no_readings_says_how_to_get_them(console, db):
    anomaly_id = incident(db, hours=1)
    html = console.get(f"/console/incidents/{anomaly_id}").text
    assert "data-points" not in html and "re-run the rule assets" in html
