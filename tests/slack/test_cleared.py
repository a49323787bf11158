"""Cleared (issue 17): an incident whose rule has not breached for its quiet gap of closed,
judged windows gets `cleared_at` and one notice, in both Slack modes; a breach that joins it
again brings it back (same incident, `cleared_at` null again, its thread says so)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from sentinelops.slack import silences
from sentinelops.slack.delivery import deliver
from sentinelops_pipelines.evaluation import evaluate_range
from sentinelops_pipelines.rules.definitions import load_rules
from sentinelops_pipelines.rules.model import Finding
from sentinelops_pipelines.storage import anomalies as anomaly_sql
from sentinelops_pipelines.storage import metrics as metrics_sql
from tests import streams
from tests.local_http import ScriptedServer
from tests.pipelines.test_alerts import slack
from tests.slack.test_app_delivery import app, header, strings
from tests.slack_api import FakeSlack
from tests.support import auth

# Windows of March 2026 would be found late (one catch-up message, no alert to follow up):
# judged here as if each ran on time.
BOOK = load_rules().model_copy(update={"found_late_after_minutes": 10**7})
GAP = timedelta(minutes=BOOK.quiet_gap_minutes)
FIVE = timedelta(minutes=5)
T0 = datetime(2026, 3, 2, tzinfo=UTC)
SPIKE = T0 + timedelta(hours=5)
RULE = "payment_failure_spike"


@pytest.fixture
def failure_spike(database_url):
    """Five hours of steady payments, a 30-minute failure spike at 05:00, calm after it."""
    streams.store(database_url, streams.normal_traffic(T0, hours=8))
    streams.store(database_url, streams.failure_spike(SPIKE, minutes=30))


def evaluate(url: str, start: datetime, end: datetime, now: datetime | None = None) -> int:
    """What the two rule assets do for [start, end); how many incidents cleared."""
    with psycopg.connect(url) as conn:
        metrics_sql.roll_up(conn, start, end)
        return evaluate_range(conn, BOOK, start, end, "medium", now=now).cleared


def incident(db) -> tuple[int, datetime, datetime | None]:
    (row,) = db.execute(f"SELECT id, window_end, cleared_at FROM anomalies WHERE rule = '{RULE}'")
    return row


def notices(db) -> list[tuple]:
    return db.execute(
        "SELECT kind, status FROM notifications WHERE kind IN ('cleared', 'recurred') ORDER BY id"
    ).fetchall()


def breach_at(url: str, start: datetime) -> str:
    """The rule breaching in the window at `start` (as a late event making a judged window breach
    would): recorded as the evaluation records it."""
    chart = {"measure": "failed_30m", "scope": "all"}
    f = Finding(rule=RULE, scope="all", severity="high", title="Payment failures again",
                window_start=start, evidence={"chart": chart})  # fmt: skip
    with psycopg.connect(url) as conn:
        return anomaly_sql.record(conn, f, GAP)


def run_to_clearing(url: str, db) -> tuple[int, datetime]:
    """Window by window through the spike and after it, as the 5-minute schedule runs: the
    incident clears in the run that judges the last window of its quiet gap, not before."""
    evaluate(url, T0 + timedelta(hours=4), SPIKE + FIVE)
    anomaly_id, _, cleared = incident(db)
    assert cleared is None
    window = SPIKE + FIVE
    while True:
        cleared_now = evaluate(url, window, window + FIVE)
        _, end, cleared = incident(db)
        if cleared is not None:
            break
        assert cleared_now == 0 and window < SPIKE + timedelta(hours=3)
        window += FIVE
    assert cleared_now == 1
    assert cleared == end  # when the condition stopped: the end of its last breaching window
    assert window + FIVE == end + GAP  # judged only once the whole gap was judged
    return anomaly_id, end


def poster(url: str, destination: object) -> Callable[[], None]:
    """One delivery pass to `destination`, as the alerts job runs it."""

    def post() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            deliver(conn, destination)  # type: ignore[arg-type]

    return post


def cleared_in_api(client, anomaly_id: int) -> str | None:
    answer = client.get(f"/api/v1/anomalies/{anomaly_id}", headers=auth()).json()
    assert answer["status"] == "open"  # clearing never changes the status
    return answer["cleared_at"]


def test_cleared_and_back_with_the_incoming_webhook(database_url, db, failure_spike, client):
    with ScriptedServer() as server:
        destination = slack(server).destination()
        post = poster(database_url, destination)

        evaluate(database_url, T0 + timedelta(hours=4), SPIKE + timedelta(minutes=10))
        post()
        assert len(server.accepted) == 1  # the alert
        anomaly_id, end = run_to_clearing(database_url, db)
        post()
        (alert, cleared) = server.accepted
        text = cleared.json()["text"]
        assert text.startswith(f":large_green_circle: #{anomaly_id} condition cleared at ")
        assert " back to " in text and "(open)" in text
        assert cleared_in_api(client, anomaly_id) == end.isoformat().replace("+00:00", "Z")

        # The schedule judging the same windows again, a backfill over them: nothing more.
        evaluate(database_url, SPIKE, end + GAP)
        post()
        assert len(server.accepted) == 2 and notices(db) == [("cleared", "sent")]

        # The next window breaches: the same incident, back, and said once.
        assert breach_at(database_url, end + GAP) in ("extended", "escalated")
        assert incident(db)[0] == anomaly_id and cleared_in_api(client, anomaly_id) is None
        post()
        post()
        back = server.accepted[2].json()["text"]
        assert back.startswith(f":rotating_light: #{anomaly_id} is back: the rule breached again")
        assert len(server.accepted) == 3
        assert db.execute("SELECT count(*) FROM anomalies").fetchone() == (1,)


def test_cleared_and_back_in_the_app_thread(database_url, db, failure_spike):
    with FakeSlack() as fake:
        destination = app(fake)
        post = poster(database_url, destination)

        evaluate(database_url, T0 + timedelta(hours=4), SPIKE + timedelta(minutes=10))
        post()
        (message,) = fake.top_level()
        assert "cleared" not in header(message)
        anomaly_id, end = run_to_clearing(database_url, db)
        post()
        post()
        (message,) = fake.top_level()  # updated, never a second message
        assert header(message).endswith("· open · cleared")
        assert any("Condition cleared at" in s for s in strings(message["blocks"]))
        (reply,) = fake.thread(message["ts"])
        assert reply["text"].startswith(":large_green_circle: Condition cleared at ")
        assert " UTC, " in reply["text"]  # the wording's own capitals kept
        assert " back to " in reply["text"]

        assert breach_at(database_url, end + GAP) in ("extended", "escalated")
        post()
        (message,) = fake.top_level()
        assert "cleared" not in header(message)
        cleared_reply, back = fake.thread(message["ts"])
        assert back["text"].startswith(":rotating_light: Back: the rule breached again at ")
        assert back["reply_broadcast"]  # as loud as the alert: the channel sees it

        # Quiet again for a whole gap after the new breach: cleared once more, one more reply.
        evaluate(database_url, end + GAP, end + 3 * GAP)
        post()
        assert [m["text"].split(" ", 2)[1] for m in fake.thread(message["ts"])] == [
            "Condition", "Back:", "Condition",
        ]  # fmt: skip
        assert notices(db) == [("cleared", "sent"), ("recurred", "sent"), ("cleared", "sent")]


def test_open_and_stale_windows_never_clear(database_url, db, failure_spike):
    # Every window judged, but the clock says the last ones of the gap have not closed.
    assert evaluate(database_url, T0 + timedelta(hours=4), SPIKE + 2 * GAP + GAP, now=SPIKE) == 0
    _, end, cleared = incident(db)
    assert cleared is None
    assert evaluate(database_url, end, end + FIVE, now=end + GAP - timedelta(seconds=1)) == 0
    # A late delivery in a window of the gap, not even rolled up yet (the coverage sensor has
    # not seen it): that window was not judged with it.
    streams.store(database_url, streams.failure_spike(end + FIVE, minutes=5))
    assert evaluate(database_url, end + 3 * FIVE, end + 4 * FIVE) == 0
    # Rolled up again, but not judged since: still not.
    with psycopg.connect(database_url) as conn:
        metrics_sql.roll_up(conn, end + FIVE, end + 2 * FIVE)
    assert evaluate(database_url, end + 3 * FIVE, end + 4 * FIVE) == 0
    assert incident(db)[2] is None
    # Judged: the late failures are a breach in the gap, so the incident goes on instead.
    evaluate(database_url, end + FIVE, end + 2 * FIVE)
    assert incident(db)[1] > end


def test_a_rule_the_window_pass_does_not_judge_never_clears_there(database_url, db):
    """webhook_gap is reconciliation's: quiet windows say nothing about whether the webhook
    is still missing events."""
    gap = Finding(rule="webhook_gap", scope="all", severity="medium", title="Events missed",
                  window_start=T0, evidence={})  # fmt: skip
    with psycopg.connect(database_url) as conn:
        assert anomaly_sql.record(conn, gap, GAP) == "opened"
    assert evaluate(database_url, T0, T0 + 2 * GAP) == 0
    assert db.execute("SELECT cleared_at FROM anomalies").fetchone() == (None,)


def test_a_return_held_by_a_silence_is_not_told_once_it_has_cleared_again(
    database_url, db, failure_spike
):
    with FakeSlack() as fake:
        destination = app(fake)
        post = poster(database_url, destination)

        evaluate(database_url, T0 + timedelta(hours=4), SPIKE + timedelta(minutes=10))
        post()
        _, end = run_to_clearing(database_url, db)
        post()
        (silence_id,) = db.execute(
            "INSERT INTO silences (rule, ends_at, reason, created_by)"
            f" VALUES ('{RULE}', now() + interval '1 hour', 'maintenance', 'api:test')"
            " RETURNING id"
        ).fetchone()
        breach_at(database_url, end + GAP)  # back during the silence: held
        post()
        evaluate(database_url, end + GAP, end + 3 * GAP)  # and quiet again: cleared again
        post()
        db.execute("UPDATE silences SET ends_at = now(), ended_by = 'api:test'")
        db.execute(silences.RELEASE, {"id": silence_id})
        post()
        (message,) = fake.top_level()
        said = [m["text"].split(" ", 2)[1] for m in fake.thread(message["ts"])]
        assert said == ["Condition", "Condition"]  # never "Back" after it cleared again
        assert header(message).endswith("· open · cleared")
