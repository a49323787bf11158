"""Early looks (issue 18): the window still open judged each minute. An early breach and the
closed window's evaluation are one anomaly and one alert; a breach the closed window does not
confirm stays recorded and its thread says so; a look never counts as the window's evaluation
(so coverage still wants the window judged, and clearing, which needs judged windows, waits
for it); the sensor posts what it finds without waiting for a run."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest

from sentinelops import coverage
from sentinelops.slack import delivery as slack_delivery
from sentinelops_pipelines import open_window
from sentinelops_pipelines.evaluation import evaluate_range
from sentinelops_pipelines.looks import look
from sentinelops_pipelines.resources import PostgresResource, RulesResource
from sentinelops_pipelines.rules.definitions import load_rules
from sentinelops_pipelines.slack import SlackResource, deliver_found
from sentinelops_pipelines.storage import metrics as metrics_sql
from tests import streams
from tests.local_http import ScriptedServer
from tests.pipelines.test_alerts import slack
from tests.slack.test_app_delivery import app, strings
from tests.slack_api import FakeSlack
from tests.support import live_rules_file

# Windows of March 2026 would be found late (one catch-up message): judged as if live.
BOOK = load_rules(live_rules_file())
T0 = datetime(2026, 3, 2, tzinfo=UTC)
W = T0 + timedelta(hours=5)  # the window looked at
FIVE = timedelta(minutes=5)
RULE = "payment_failure_spike"


def declines(start: datetime, n: int, every: float = 5) -> list[dict]:
    return [e for i in range(n) for e in streams.failed_payment(
        start + timedelta(seconds=every * i), f"d{i}_{start.timestamp():.0f}")]  # fmt: skip


def payments(start: datetime, n: int, every: float) -> list[dict]:
    return [e for i in range(n) for e in streams.succeeded_payment(
        start + timedelta(seconds=every * i), f"p{i}_{start.timestamp():.0f}")]  # fmt: skip


@pytest.fixture
def slack_server():
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def steady(database_url):
    """Five hours of ordinary payments before W, judged; traffic goes on through W."""
    streams.store(database_url, streams.normal_traffic(T0, hours=6))
    with psycopg.connect(database_url) as conn:
        metrics_sql.roll_up(conn, W - timedelta(hours=1), W)
        evaluate_range(conn, BOOK, W - timedelta(hours=1), W, "medium")


def look_at(url: str, now: datetime):
    with psycopg.connect(url) as conn:
        return look(conn, BOOK, now, "medium", until=now)


def close(url: str, now: datetime | None = None):
    """What the schedule's run does once W has closed."""
    with psycopg.connect(url) as conn:
        metrics_sql.roll_up(conn, W, W + FIVE)
        return evaluate_range(conn, BOOK, W, W + FIVE, "medium", now=now)


def deliver(url: str, server: ScriptedServer, ids: list[int]) -> None:
    deliver_found(url, slack(server), ids, dg.get_dagster_logger())


def anomaly(db) -> tuple[int, dict, str]:
    (row,) = db.execute(f"SELECT id, evidence, severity FROM anomalies WHERE rule = '{RULE}'")
    return row


def test_an_early_breach_and_its_closed_window_are_one_anomaly_and_one_alert(
    database_url, db, steady, slack_server
):
    streams.store(database_url, declines(W + timedelta(seconds=5), 20))  # by W+1:45
    seen = look_at(database_url, W + timedelta(minutes=2, seconds=10))
    assert seen is not None and seen.minutes == 2
    assert seen.outcomes["opened"] == 1 and seen.announced
    deliver(database_url, slack_server, seen.announced)
    (alert,) = slack_server.accepted  # posted right after the look, saying it was early
    assert "Found 2 min into its 5-minute window, before it closed" in json.dumps(alert.json())
    anomaly_id, evidence, severity = anomaly(db)
    assert evidence["look"]["minutes"] == 2 and evidence["observed"]["failed"] == 20
    # It says what the look saw: 2 minutes of the window, not 5 (27 of 30, 117 of 120).
    assert evidence["observed"]["window"] in ("2 min", "27 min", "1 h 57 min")
    # A look is partial: the window is not evaluated, so coverage still wants it judged.
    (evaluated,) = db.execute(
        "SELECT evaluated_snapshot FROM window_metrics WHERE window_start = %s", (W,)
    ).fetchone()
    assert evaluated is None
    with psycopg.connect(database_url) as conn:
        assert W in coverage.scan(conn, W + FIVE + FIVE, W - timedelta(hours=1)).stale_windows

    # Two more looks, the window's close, then the pass run again: still the one incident.
    look_at(database_url, W + timedelta(minutes=3, seconds=10))
    look_at(database_url, W + timedelta(minutes=4, seconds=10))
    closed = close(database_url)
    assert closed.outcomes["opened"] == 0 and closed.outcomes["confirmed"] == 1
    close(database_url)
    # A look whose clock still said W was open, made after W's closed pass: nothing to do.
    assert look_at(database_url, W + timedelta(minutes=4, seconds=50)) is None
    again_id, evidence, again_severity = anomaly(db)
    assert (again_id, again_severity) == (anomaly_id, severity)
    assert "look" not in evidence and evidence["early_look"]["minutes"] == 2
    assert evidence["windows_breached"] == 1
    # The closed window's numbers: with the ordinary decline at 02:30, after the look.
    assert evidence["observed"]["failed"] == 21
    deliver(database_url, slack_server, [anomaly_id])
    assert len(slack_server.accepted) == 1
    kinds = db.execute("SELECT kind FROM notifications WHERE anomaly_id = %s", (anomaly_id,))
    assert [k for (k,) in kinds] == ["opened"]


def test_an_early_breach_the_closed_window_does_not_confirm_stays_and_says_so(
    database_url, db, steady
):
    streams.store(database_url, declines(W, 10, every=3))  # 10 declines in the first 30 s ...
    with FakeSlack() as fake:
        destination = app(fake)

        def post() -> None:
            with psycopg.connect(database_url, autocommit=True) as conn:
                slack_delivery.deliver(conn, destination)

        seen = look_at(database_url, W + timedelta(minutes=1, seconds=5))
        assert seen is not None and seen.outcomes["opened"] == 1
        post()
        # ... then 200 good payments: the closed window's rate is ordinary.
        streams.store(database_url, payments(W + timedelta(minutes=2), 200, every=0.8))
        closed = close(database_url)
        assert closed.unconfirmed == 1
        anomaly_id, evidence, _ = anomaly(db)  # still there, with what the look saw
        assert evidence["look"]["minutes"] == 1
        assert evidence["unconfirmed"]["look"]["minutes"] == 1
        # The closed window read 11 failed payments (with the ordinary decline at 02:30).
        assert evidence["unconfirmed"]["value"] == 11
        close(database_url)  # judged again: no second notice
        post()
        (message,) = fake.top_level()
        assert any("not confirmed once the window closed" in t for t in strings(message))
        (reply,) = fake.thread(message["ts"])
        assert reply["text"].startswith(":white_circle: Not confirmed: found 1 min into the ")
        assert "which at its close read failed payments in" in reply["text"]
    kinds = db.execute("SELECT kind, status FROM notifications WHERE anomaly_id = %s ORDER BY id",
                       (anomaly_id,)).fetchall()  # fmt: skip
    assert kinds == [("opened", "sent"), ("unconfirmed", "sent")]


def test_a_closed_window_breaching_less_than_its_look_says_so_and_keeps_its_own_verdict(
    database_url, db, steady, slack_server
):
    """webhook_integrity: five rejected attempts and nothing verified a minute in is HIGH; with
    a hundred verified events by the close, the same five are LOW. The alert went out at HIGH
    (severity never falls), so the thread says the closed window did not confirm that."""
    for i in range(5):
        db.execute(
            "INSERT INTO webhook_rejections (received_at, reason, body_size)"
            " VALUES (%s, 'signature_mismatch', 10)",
            (W + timedelta(seconds=10 * i),),
        )
    seen = look_at(database_url, W + timedelta(minutes=1, seconds=5))
    assert seen is not None and seen.by_rule["webhook_integrity:opened"] == 1
    deliver(database_url, slack_server, seen.announced)
    verified = payments(W + timedelta(minutes=2), 100, every=1)
    streams.store(database_url, verified, received_at=W + timedelta(minutes=2))
    assert close(database_url).unconfirmed == 1
    close(database_url)  # judged again: nothing more
    ((anomaly_id, severity, evidence),) = db.execute(
        "SELECT id, severity, evidence FROM anomalies WHERE rule = 'webhook_integrity'"
    ).fetchall()
    assert severity == "high"
    assert evidence["unconfirmed"] == {"severity": "low", "look_severity": "high",
                                       "look": evidence["early_look"]}  # fmt: skip
    assert db.execute(
        "SELECT severity FROM anomaly_windows WHERE rule = 'webhook_integrity'"
    ).fetchall() == [("low",)]  # the window keeps the closed verdict, not the look's
    deliver(database_url, slack_server, [anomaly_id])
    texts = [r.json()["text"] for r in slack_server.accepted]
    assert len(texts) == 2, texts
    assert f"#{anomaly_id} not confirmed at HIGH: found 1 min into the" in texts[1]
    assert texts[1].split(" · ")[0].endswith("at its close breached at LOW only")


def test_a_look_gives_way_to_a_rules_run_holding_the_incident(database_url, steady, monkeypatch):
    """A long rules run (a backfill) holds the rule's incident lock: the look waits its lock
    timeout, then skips this minute instead of piling up behind the run."""
    monkeypatch.setattr(open_window, "database_now", lambda conn: W + timedelta(minutes=2))
    monkeypatch.setattr(open_window, "LIMITS", "SELECT set_config('lock_timeout', '200ms', true)")
    streams.store(database_url, declines(W + timedelta(seconds=5), 20))
    resources = {
        "postgres": PostgresResource(database_url=database_url),
        "rules": RulesResource(path=live_rules_file()),
        "slack": SlackResource(),
    }
    with dg.instance_for_test() as instance, psycopg.connect(database_url) as run:
        run.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    (f"anomaly:{RULE}:all",))  # fmt: skip
        context = dg.build_sensor_context(instance=instance, resources=resources)
        result = open_window.open_window_sensor(context)
        assert result.skip_reason is not None and "LockNotAvailable" in str(result.skip_reason)
        assert result.cursor is None  # the next tick looks again
        run.rollback()
        result = open_window.open_window_sensor(context)
        assert result.asset_events and result.cursor


def test_the_sensor_looks_once_a_minute_posts_at_once_and_reports_the_look(
    database_url, steady, slack_server, monkeypatch
):
    now = W + timedelta(minutes=2, seconds=10)
    monkeypatch.setattr(open_window, "database_now", lambda conn: now)
    streams.store(database_url, declines(W + timedelta(seconds=5), 20))
    resources = {
        "postgres": PostgresResource(database_url=database_url),
        "rules": RulesResource(path=live_rules_file()),
        "slack": slack(slack_server),
    }
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources=resources)
        result = open_window.open_window_sensor(context)
        assert len(slack_server.accepted) == 1  # no alerts run needed
        (observation,) = result.asset_events
        assert observation.asset_key == dg.AssetKey("anomalies")
        assert observation.metadata["minutes_seen"].value == 2
        assert observation.metadata["anomalies_opened"].value == 1
        assert observation.metadata["alerts_posted"].value == 1
        # The same minute again: no second look.
        context = dg.build_sensor_context(
            instance=instance, resources=resources, cursor=result.cursor
        )
        again = open_window.open_window_sensor(context)
        assert again.skip_reason is not None and not again.asset_events
