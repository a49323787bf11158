"""Silences (issue 17) on the pipeline and delivery side, on real PostgreSQL, in both Slack modes
(the incoming webhook against a local server, the app against a fake Web API): an incident
during a planned maintenance is recorded, held, and posted once when the silence ends."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from sentinelops.slack import silences
from sentinelops.slack.delivery import MAX_ATTEMPTS, deliver
from sentinelops_pipelines.storage import anomalies as anomaly_sql
from sentinelops_pipelines.storage import catch_up
from tests.local_http import ScriptedServer
from tests.pipelines.test_alerts import finding, record, slack
from tests.slack.test_app_delivery import app, change, header, strings
from tests.slack_api import FakeSlack

RULE = "payment_failure_spike"
FOUND = "Found during silence #1 (reason: planned maintenance)"


@pytest.fixture
def server():
    with ScriptedServer() as scripted:
        yield scripted


@pytest.fixture
def fake():
    with FakeSlack() as api:
        yield api


def silence(db, rule: str | None = RULE, scope: str | None = None, **kw: str) -> int:
    """As the API creates one: from now, for an hour."""
    (silence_id,) = db.execute(
        "INSERT INTO silences (rule, scope, ends_at, reason, created_by)"
        " VALUES (%s, %s, now() + interval '1 hour', %s, 'api:test') RETURNING id",
        (rule, scope, kw.get("reason", "planned maintenance")),
    ).fetchone()
    return silence_id


def end(db, silence_id: int) -> None:
    """As the API's DELETE does: ended now, what it held due at once (its own RELEASE)."""
    db.execute(
        "UPDATE silences SET ends_at = now(), ended_by = 'api:test' WHERE id = %s", (silence_id,)
    )
    db.execute(silences.RELEASE, {"id": silence_id})


def webhook(database_url: str, server: ScriptedServer, times: int = 1) -> list:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return [deliver(conn, slack(server).destination()) for _ in range(times)]


def slack_app(database_url: str, api: FakeSlack, times: int = 1) -> list:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return [deliver(conn, app(api)) for _ in range(times)]


def rows(db) -> list[tuple]:
    return db.execute(
        "SELECT anomaly_id, kind, status, attempts, last_error FROM notifications ORDER BY id"
    ).fetchall()


def silenced_by(db, anomaly_id: int) -> int | None:
    return db.execute("SELECT silenced_by FROM anomalies WHERE id = %s", (anomaly_id,)).fetchone()[
        0
    ]


def due_again(db) -> None:
    """Every pending row due now, as if its silence were replaced or a lease ran out: the held
    row is claimed again, each claim counting an attempt until it is given back."""
    db.execute("UPDATE notifications SET next_attempt_at = now() WHERE status = 'pending'")


def said(received) -> str:
    return "\n".join(strings(received.json()))


def test_a_planned_maintenance_is_recorded_held_then_posted_once_webhook(database_url, db, server):
    silence_id = silence(db)
    assert record(database_url, finding("high")) == "opened"
    assert silenced_by(db, 1) == silence_id
    assert webhook(database_url, server) == [{"silenced": 1}]
    assert server.received == []
    ((_, kind, status, attempts, error),) = rows(db)
    assert (kind, status, attempts) == ("opened", "pending", 0)
    assert error.startswith(f"silenced by #{silence_id} until 20") and error.endswith("Z")

    for _ in range(MAX_ATTEMPTS + 2):  # claimed again and again, never failed
        due_again(db)
        webhook(database_url, server)
    assert server.received == []
    assert rows(db)[0][2:4] == ("pending", 0)

    end(db, silence_id)
    webhook(database_url, server, times=2)
    (posted,) = server.received
    assert FOUND in said(posted)
    assert rows(db)[0][2:4] == ("sent", 1)

    record(database_url, finding("high", scope="eu"))  # after the silence: as usual
    webhook(database_url, server)
    assert len(server.accepted) == 2
    assert silenced_by(db, 2) is None
    assert "silence" not in said(server.accepted[1])


def test_a_planned_maintenance_is_recorded_held_then_posted_once_app(database_url, db, fake):
    silence_id = silence(db, reason="planned <!channel> maintenance & more")
    record(database_url, finding("high"))
    slack_app(database_url, fake, times=3)
    assert fake.top_level() == [] and fake.received == []
    assert rows(db)[0][2:4] == ("pending", 0)

    end(db, silence_id)
    slack_app(database_url, fake, times=2)
    (message,) = fake.top_level()
    found = "Found during silence #1 (reason: planned &lt;!channel&gt; maintenance &amp; more)"
    assert found in "\n".join(strings(message["blocks"]))
    assert rows(db)[0][2:4] == ("sent", 1)
    assert [c.method for c in fake.received] == ["chat.postMessage"]  # no search for a lost post

    record(database_url, finding("high", scope="eu"))
    slack_app(database_url, fake)
    assert len(fake.top_level()) == 2
    assert "silence" not in "\n".join(strings(fake.top_level()[1]["blocks"]))


@pytest.mark.parametrize("mode", ["webhook", "app"])
def test_an_incident_acknowledged_during_the_silence_is_never_posted(
    database_url, db, server, fake, mode
):
    def run() -> None:
        if mode == "webhook":
            webhook(database_url, server, times=2)
        else:
            slack_app(database_url, fake, times=2)

    silence_id = silence(db)
    record(database_url, finding("high"))
    run()
    change(database_url, 1, "acknowledged", "api:alice", "known: the maintenance")
    run()
    end(db, silence_id)
    run()
    assert server.received == [] and fake.top_level() == []
    assert {status for _, _, status, _, _ in rows(db)} == {"skipped"}


def test_a_silence_for_another_rule_or_scope_holds_nothing(database_url, db, server):
    silence(db, rule="refund_spike")
    silence(db, rule=None, scope="eu")
    record(database_url, finding("high"))  # rule payment_failure_spike, scope all
    assert silenced_by(db, 1) is None
    webhook(database_url, server)
    assert len(server.accepted) == 1 and "silence" not in said(server.accepted[0])

    # A silence of a scope holds every rule's anomalies there.
    record(database_url, finding("high", scope="eu"))
    assert silenced_by(db, 2) == 2
    assert webhook(database_url, server) == [{"silenced": 1}]
    assert len(server.received) == 1


def test_an_escalation_during_a_silence_is_held_but_changes_of_the_message_are_not(
    database_url, db, fake
):
    record(database_url, finding("medium"))
    slack_app(database_url, fake)
    (message,) = fake.top_level()
    silence_id = silence(db)
    assert record(database_url, finding("high")) == "escalated"
    assert silenced_by(db, 1) is None  # posted before the silence: not found during it
    slack_app(database_url, fake, times=2)
    assert fake.message(message["ts"])["edited"] == 0  # the escalation waits

    # Someone acknowledges the incident meanwhile: its message follows at once.
    change(database_url, 1, "acknowledged", "slack:U0ALICE")
    slack_app(database_url, fake)
    assert header(fake.message(message["ts"])).endswith("· acknowledged")
    assert [r["text"][:27] for r in fake.thread(message["ts"])] == [":white_check_mark: Acknowle"]
    assert [(k, s) for _, k, s, _, _ in rows(db)] == [
        ("opened", "sent"), ("escalated", "pending"), ("acknowledged", "sent")]  # fmt: skip

    end(db, silence_id)
    slack_app(database_url, fake, times=2)
    replies = fake.thread(message["ts"])
    assert len(replies) == 2 and replies[1]["text"].startswith(":arrow_up: Escalated to *HIGH*")
    assert {s for _, _, s, _, _ in rows(db)} == {"sent"}
    assert len(fake.top_level()) == 1


def test_an_incident_opened_and_escalated_in_one_silence_is_posted_once(database_url, db, server):
    silence_id = silence(db)
    assert record(database_url, finding("medium")) == "opened"
    webhook(database_url, server)
    assert record(database_url, finding("high")) == "escalated"
    webhook(database_url, server)
    assert server.received == []

    end(db, silence_id)
    webhook(database_url, server, times=2)
    (posted,) = server.received  # the one post shows its current severity; no second one
    assert FOUND in said(posted) and "severity *high*" in said(posted)
    assert [(k, s) for _, k, s, _, _ in rows(db)] == [("opened", "sent"), ("escalated", "skipped")]


def test_an_incident_found_late_during_a_silence_waits_for_it_too(database_url, db, server):
    # A catch-up message is never held: a late incident a silence covers is queued as news.
    silence_id = silence(db)
    announced: list[tuple[int, str]] = []
    with psycopg.connect(database_url) as conn:  # its window is months old: found late
        anomaly_sql.record(conn, finding("high"), timedelta(minutes=30), announce=announced)
        assert catch_up.announce(conn, announced, "medium", timedelta(hours=1)) == 0
    webhook(database_url, server)
    assert server.received == []
    assert db.execute("SELECT kind FROM notifications").fetchall() == [("opened",)]
    end(db, silence_id)
    webhook(database_url, server)
    (posted,) = server.received
    assert FOUND in said(posted)
