"""Slack down for a "day", then back: every queued alert is posted exactly once afterwards.

tests/pipelines/test_alerts.py covers one alert through one 500 and one timeout; this is the
long outage: several alerts, many failing passes (each backoff skipped through SQL rather than
slept through), then recovery."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from sentinelops.slack.delivery import deliver
from sentinelops_pipelines.slack import SlackResource
from sentinelops_pipelines.storage import anomalies as anomaly_sql
from tests.local_http import Reply, ScriptedServer
from tests.pipelines.test_alerts import finding

PASSES_WHILE_DOWN = 8  # a day of five-minute delivery passes, compressed


def test_alerts_queued_during_a_slack_outage_are_each_posted_once_after_it(database_url, db):
    # Three incidents in three scopes: three high-severity anomalies, three queued alerts.
    with psycopg.connect(database_url) as conn:
        for scope in ("all", "eur", "gbp"):
            anomaly_sql.record(conn, finding("high", scope=scope), timedelta(minutes=30))
    assert db.execute("SELECT count(*) FROM notifications").fetchone() == (3,)

    with ScriptedServer(Reply(500, "internal_error")) as server:
        slack = SlackResource(
            webhook_url=f"{server.url}/services/T0/B0/fault", timeout_seconds=2,
            retry_backoff_seconds=60,
        )  # fmt: skip
        with psycopg.connect(database_url, autocommit=True) as conn:
            for _ in range(PASSES_WHILE_DOWN):
                deliver(conn, slack.destination())
                # The backoff has passed (instead of sleeping through it).
                db.execute("UPDATE notifications SET next_attempt_at = now()")
        assert len(server.received) >= PASSES_WHILE_DOWN  # Slack was tried on every pass
        assert server.accepted == []
        # A pass stops at the first 5xx (the rest would fail the same way): all still pending.
        pending = db.execute("SELECT status, split_part(last_error, ':', 1) FROM notifications")
        assert {tuple(r) for r in pending} <= {("pending", "HTTP 500"), ("pending", None)}

        server.script(Reply(200, "ok"))
        tried_while_down = len(server.received)
        with psycopg.connect(database_url, autocommit=True) as conn:
            for _ in range(3):  # the scheduled delivery keeps running after recovery
                deliver(conn, slack.destination())
                db.execute("UPDATE notifications SET next_attempt_at = now()")

    posted = [r.json()["text"] for r in server.received[tried_while_down:]]
    # A lost alert (given up after the outage) or a repeated one (posted by every pass) fails.
    assert sorted(t.split("Anomaly #")[1].split(" ")[0] for t in posted) == ["1", "2", "3"]
    assert db.execute("SELECT DISTINCT status FROM notifications").fetchall() == [("sent",)]
