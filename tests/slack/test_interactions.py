"""The Acknowledge / Resolve / Reopen buttons: POST /api/v1/slack/interactions signed exactly as
Slack signs it, applied on real PostgreSQL, the message updated in a local fake of Slack."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from slack_sdk.signature import SignatureVerifier

from sentinelops.slack import config
from sentinelops.slack.delivery import deliver
from sentinelops.slack.outbox import enqueue_anomaly
from tests.conftest import make_settings
from tests.console.test_incidents import act
from tests.slack_api import CHANNEL, FakeSlack, Fault
from tests.support import TOKEN, error_of
from tests.webhook_service.test_anomalies_api import add_anomaly, patch
from webhook_service.main import create_app

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
URL = "/api/v1/slack/interactions"
ACK, RESOLVE, REOPEN = "sentinelops_acknowledge", "sentinelops_resolve", "sentinelops_reopen"


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def app_settings(database_url, tmp_path, slack):
    return make_settings(
        database_url,
        tmp_path,
        SLACK_BOT_TOKEN="xoxb-test",
        SLACK_CHANNEL_ID=CHANNEL,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack.url,
    )


@pytest.fixture
def app(app_settings):
    with TestClient(create_app(app_settings)) as test_client:
        yield test_client


def announce(db, settings, anomaly_id: int) -> str:
    """The anomaly's alert posted to the fake Slack, as the alerts job does; its message ts."""
    enqueue_anomaly(db, anomaly_id, "opened", "low")
    assert deliver(db, config.destination(settings), anomaly_id=anomaly_id)["sent"] == 1
    return db.execute(
        "SELECT ts FROM slack_messages WHERE anomaly_id = %s", (anomaly_id,)
    ).fetchone()[0]


def payload(anomaly_id, action=ACK, *, user="U0ALICE", name="alice", ts="1700000000.000100",
            response_url=None) -> dict:  # fmt: skip
    return {
        "type": "block_actions",
        "user": {"id": user, "username": name, "name": name, "team_id": "T0"},
        "actions": [
            {
                "action_id": action,
                "block_id": "sentinelops_actions",
                "type": "button",
                "value": str(anomaly_id),
                "action_ts": ts,
            }
        ],
        "response_url": response_url,
        "channel": {"id": CHANNEL},
    }


def signed(body: str, *, secret=SIGNING_SECRET, timestamp=None) -> dict:
    """The headers Slack sends: v0=hex(HMAC-SHA256(secret, f"v0:{timestamp}:{body}"))."""
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


def press(client, body: dict | str, **sign):
    raw = body if isinstance(body, str) else urlencode({"payload": json.dumps(body)})
    return client.post(URL, content=raw, headers=signed(raw, **sign))


def state(db, anomaly_id):
    """(status, history rows, outbox change rows, interactions recorded)."""
    one = lambda q: db.execute(q, (anomaly_id,)).fetchone()[0]  # noqa: E731
    return (
        one("SELECT status FROM anomalies WHERE id = %s"),
        one("SELECT count(*) FROM anomaly_history WHERE anomaly_id = %s"),
        one(
            "SELECT count(*) FROM notifications WHERE anomaly_id = %s"
            " AND kind IN ('acknowledged', 'resolved', 'reopened')"
        ),  # fmt: skip
        db.execute("SELECT count(*) FROM slack_interactions").fetchone()[0],
    )


def test_each_button_applies_its_change_as_the_slack_user_and_updates_the_message(
    app, db, app_settings, slack
):
    anomaly_id = add_anomaly(db)
    ts = announce(db, app_settings, anomaly_id)
    steps = [(ACK, "acknowledged"), (RESOLVE, "resolved"), (REOPEN, "open")]
    for n, (action, status) in enumerate(steps, start=1):
        response = press(app, payload(anomaly_id, action, ts=f"1700000000.00010{n}"))
        assert (response.status_code, response.content) == (200, b"")
        last = db.execute(
            "SELECT to_status, actor, note FROM anomaly_history WHERE anomaly_id = %s"
            " ORDER BY id DESC LIMIT 1",
            (anomaly_id,),
        ).fetchone()
        assert last == (status, "slack:U0ALICE", "from Slack by alice")
        # Updated at once (the nudge), not at the next alerts run: edited and told in its thread.
        assert slack.message(ts)["edited"] == n
        assert len(slack.thread(ts)) == n
    assert len(slack.top_level()) == 1
    sent = db.execute(
        "SELECT kind, status FROM notifications WHERE anomaly_id = %s ORDER BY id", (anomaly_id,)
    ).fetchall()
    assert sent == [("opened", "sent"), ("acknowledged", "sent"), ("resolved", "sent"),
                    ("reopened", "sent")]  # fmt: skip


def test_a_press_after_someone_else_changed_it_answers_200_and_tells_the_presser(
    app, db, app_settings, slack
):
    anomaly_id = add_anomaly(db)
    ts = announce(db, app_settings, anomaly_id)
    assert patch(app, anomaly_id, "resolved").status_code == 200  # meanwhile, through the API
    assert len(slack.thread(ts)) == 1  # the API's change reached Slack at once too
    before = state(db, anomaly_id)

    late = payload(anomaly_id, ACK, response_url=slack.response_url("late"))
    response = press(app, late)

    assert response.status_code == 200
    assert state(db, anomaly_id)[:3] == before[:3]  # still resolved, nothing more queued
    assert len(slack.responses) == 1
    told = slack.responses[0]
    assert told["response_type"] == "ephemeral" and told["replace_original"] is False
    assert "already resolved" in told["text"] and "api:" in told["text"]
    assert "Acknowledge was not applied" in told["text"]
    # The same press delivered again: recorded as a conflict once, told once.
    assert press(app, late).status_code == 200
    assert len(slack.responses) == 1


def test_a_conflict_names_the_slack_user_who_did_it(app, db):
    anomaly_id = add_anomaly(db)
    assert press(app, payload(anomaly_id, RESOLVE, user="U0BOB", name="bob")).status_code == 200
    with FakeSlack() as other:
        late = payload(anomaly_id, ACK, ts="2", response_url=other.response_url())
        assert press(app, late).status_code == 200
        assert "<@U0BOB> resolved it at" in other.responses[0]["text"]


@pytest.mark.parametrize(
    "sign",
    [
        pytest.param({"secret": "not-the-signing-secret"}, id="forged signature"),
        pytest.param({"timestamp": int(time.time()) - 6 * 60}, id="stale timestamp (6 min)"),
    ],
)
def test_a_bad_signature_is_refused_and_changes_nothing(app, db, sign):
    anomaly_id = add_anomaly(db)
    before = state(db, anomaly_id)
    response = press(app, payload(anomaly_id), **sign)
    assert error_of(response) == (401, "InvalidSlackSignature")
    assert state(db, anomaly_id) == before


def test_an_unsigned_request_is_refused(app, db):
    anomaly_id = add_anomaly(db)
    raw = urlencode({"payload": json.dumps(payload(anomaly_id))})
    response = app.post(
        URL, content=raw, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert error_of(response) == (401, "InvalidSlackSignature")
    assert state(db, anomaly_id)[0] == "open"


def test_the_same_press_delivered_twice_applies_once(app, db, app_settings, slack):
    anomaly_id = add_anomaly(db)
    ts = announce(db, app_settings, anomaly_id)
    first = press(app, payload(anomaly_id, ACK))
    again = press(app, payload(anomaly_id, ACK))  # Slack's retry: same user, action and ts
    assert (first.status_code, again.status_code) == (200, 200)
    assert state(db, anomaly_id) == ("acknowledged", 2, 1, 1)
    assert len(slack.thread(ts)) == 1


def test_an_unknown_anomaly_is_404_and_changes_nothing(app, db):
    response = press(app, payload(987654))
    assert error_of(response) == (404, "NotFound")
    assert db.execute("SELECT count(*) FROM slack_interactions").fetchone()[0] == 0


def _without(key: str, where: str = "") -> dict:
    body = payload(1)
    (body["actions"][0] if where == "action" else body).pop(key)
    return body


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("payload=%7Bnot+json", id="not JSON"),
        pytest.param("text=hello", id="no payload field"),
        pytest.param("payload=%5B1%5D", id="not an object"),
        pytest.param({**payload(1), "type": "view_submission"}, id="not block_actions"),
        pytest.param({**payload(1), "actions": []}, id="no action"),
        pytest.param({**payload(1), "actions": payload(1)["actions"] * 2}, id="two actions"),
        pytest.param(_without("user"), id="no user"),
        pytest.param(_without("action_ts", "action"), id="no action_ts"),
        pytest.param(payload(1, "sentinelops_delete"), id="unknown action_id"),
        pytest.param(payload("one"), id="non-numeric value"),
        pytest.param(payload(0), id="value zero"),
        pytest.param(payload(2**63), id="value past bigint"),
    ],
)
def test_a_malformed_payload_is_400_and_changes_nothing(app, db, body):
    anomaly_id = add_anomaly(db)
    assert anomaly_id == 1
    before = state(db, anomaly_id)
    assert error_of(press(app, body)) == (400, "InvalidInteraction")
    assert state(db, anomaly_id) == before


def test_without_a_signing_secret_interactions_answer_503(client, db):
    anomaly_id = add_anomaly(db)
    response = press(client, payload(anomaly_id))
    assert error_of(response) == (503, "SlackNotConfigured")
    assert "SLACK_SIGNING_SECRET" in response.json()["detail"]
    assert state(db, anomaly_id)[0] == "open"


def test_a_body_over_the_api_limit_is_refused_before_it_is_read(app):
    raw = "payload=" + "x" * (70 * 1024)
    assert error_of(app.post(URL, content=raw, headers=signed(raw)))[0] == 413


def test_slack_failing_leaves_the_change_pending_for_the_alerts_job(app, db, app_settings, slack):
    anomaly_id = add_anomaly(db)
    ts = announce(db, app_settings, anomaly_id)
    slack.fail("chat.update", Fault(status=500))
    assert press(app, payload(anomaly_id, RESOLVE)).status_code == 200
    assert state(db, anomaly_id)[0] == "resolved"
    change = db.execute(
        "SELECT status FROM notifications WHERE anomaly_id = %s AND kind = 'resolved'",
        (anomaly_id,),
    ).fetchone()
    assert change == ("pending",) and slack.thread(ts) == []


def test_the_api_queues_a_change_only_for_announced_anomalies(client, db, settings):
    announced, quiet, demo = add_anomaly(db), add_anomaly(db, rule="r2"), add_anomaly(db, demo=True)
    for anomaly_id in (announced, demo):
        enqueue_anomaly(db, anomaly_id, "opened", "low")  # the demo one is never queued
    for anomaly_id in (announced, quiet, demo):
        assert patch(client, anomaly_id, "acknowledged", note="on it").status_code == 200
    changes = db.execute(
        "SELECT anomaly_id, kind, payload->>'actor' LIKE 'api:%%', payload->>'note'"
        " FROM notifications WHERE kind = 'acknowledged'"
    ).fetchall()
    assert changes == [(announced, "acknowledged", True, "on it")]


def test_a_console_change_updates_the_message_at_once(database_url, tmp_path, db, slack):
    settings = make_settings(database_url, tmp_path, SENTINELOPS_API_TOKEN=f"alice={TOKEN}",
                             SLACK_BOT_TOKEN="xoxb-test", SLACK_CHANNEL_ID=CHANNEL,
                             SLACK_API_URL=slack.url)  # fmt: skip
    anomaly_id = add_anomaly(db)
    ts = announce(db, settings, anomaly_id)
    with TestClient(create_app(settings)) as console:
        console.post("/console/sign-in", data={"token": TOKEN, "next": "/console"})
        assert act(console, anomaly_id, "acknowledged", "on it").status_code == 303
    assert slack.message(ts)["edited"] == 1
    (reply,) = slack.thread(ts)
    assert "console:alice" in str(reply)
