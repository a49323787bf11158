"""Silences in the console without a browser: the list in the API's order, silencing an
incident's rule for two hours (actor, CSRF, refusals that store nothing), and "End now"."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from sentinelops.slack.silences import held_error
from tests.conftest import make_settings
from tests.console.test_incidents import csrf_of
from tests.support import auth
from tests.webhook_service.test_anomalies_api import add_anomaly
from tests.webhook_service.test_silences_api import add_silence
from webhook_service.main import create_app

REASON = "processor maintenance until 16:00"


def silence_from(client, anomaly_id, reason=REASON, csrf=None, **headers):
    page = client.get(f"/console/incidents/{anomaly_id}")
    return client.post(
        f"/console/incidents/{anomaly_id}/silence",
        data={"reason": reason, "csrf": csrf_of(page.text) if csrf is None else csrf},
        headers=headers,
        follow_redirects=False,
    )


def end_now(client, silence_id, csrf=None):
    page = client.get("/console/silences")
    return client.post(
        f"/console/silences/{silence_id}/end",
        data={"csrf": csrf_of(page.text) if csrf is None else csrf},
        follow_redirects=False,
    )


def listed(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="silence-(\d+)"', html)]


def endable(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'action="/console/silences/(\d+)/end"', html)]


def stored(db) -> list[tuple]:
    return db.execute(
        "SELECT id, rule, scope, reason, created_by, ended_by FROM silences ORDER BY id"
    ).fetchall()


class TestList:
    def test_active_and_upcoming_first_then_expired_in_the_apis_order(self, console, db):
        hour = timedelta(hours=1)
        long_over = add_silence(db, starts=-5 * hour, ends=-4 * hour)
        just_over = add_silence(db, starts=-3 * hour, ends=-hour)
        upcoming = add_silence(db, starts=hour, ends=3 * hour)
        active = add_silence(db, starts=-hour, ends=hour)
        older_active = add_silence(db, starts=-2 * hour, ends=5 * hour)

        html = console.get("/console/silences").text
        expected = [older_active, active, upcoming, just_over, long_over]
        assert listed(html) == expected
        api = console.get("/api/v1/silences", headers=auth()).json()["items"]
        assert [s["id"] for s in api] == expected
        assert endable(html) == [older_active, active, upcoming]
        assert "refund_spike" in html and "every scope" in html and "api:test" in html

    def test_the_navigation_links_to_it(self, console):
        assert 'href="/console/silences"' in console.get("/console").text

    def test_a_public_reader_sees_the_list_but_cannot_end_one(self, database_url, tmp_path, db):
        silence = add_silence(db, starts=-timedelta(hours=1), ends=timedelta(hours=1))
        settings = make_settings(database_url, tmp_path, SENTINELOPS_PUBLIC_READS="true")
        with TestClient(create_app(settings)) as reader:
            html = reader.get("/console/silences").text
            assert listed(html) == [silence] and endable(html) == []
            answer = reader.post(f"/console/silences/{silence}/end", follow_redirects=False)
        assert answer.status_code == 303 and "/console/sign-in" in answer.headers["location"]
        assert db.execute("SELECT ended_by, ends_at > now() FROM silences").fetchall() == [
            (None, True)
        ]


class TestSilenceFromAnIncident:
    def test_silences_the_incidents_rule_and_scope_for_two_hours_as_the_console_user(
        self, console, db
    ):
        anomaly_id = add_anomaly(db, rule="refund_spike")
        page = console.get(f"/console/incidents/{anomaly_id}").text
        assert "Silence this rule for 2 hours" in page

        answer = silence_from(console, anomaly_id)

        assert answer.status_code == 303
        [(silence_id, *fields)] = stored(db)
        assert fields == ["refund_spike", "all", REASON, "console:alice", None]
        assert answer.headers["location"] == f"/console/silences?created={silence_id}"
        starts, ends = db.execute("SELECT starts_at, ends_at FROM silences").fetchone()
        now = datetime.now(UTC)
        assert abs(starts - now) < timedelta(minutes=1)
        assert abs(ends - (now + timedelta(hours=2))) < timedelta(minutes=1)
        page = console.get(answer.headers["location"]).text
        assert f"Silence #{silence_id} created." in page
        assert listed(page) == endable(page) == [silence_id]

    @pytest.mark.parametrize(
        ("reason", "message"),
        [("", "Give a reason"), ("   ", "Give a reason"), ("x" * 501, "1 to 500 characters"),
         ("a\x00b", "Give a reason")],
        ids=["empty-reason", "blank-reason", "reason-too-long", "nul-in-reason"],
    )  # fmt: skip
    def test_bad_input_is_a_message_on_the_incident_page_and_stores_nothing(
        self, console, db, reason, message
    ):
        anomaly_id = add_anomaly(db)
        answer = silence_from(console, anomaly_id, reason=reason)
        assert answer.status_code == 422
        assert answer.headers["content-type"].startswith("text/html")
        assert re.search(r'id="problem">[^<]*' + re.escape(message), answer.text)
        assert 'id="status">open' in answer.text  # the incident page, not an error page
        assert stored(db) == []

    @pytest.mark.parametrize(
        ("csrf", "headers"),
        [("", {}), ("forged", {}), (None, {"Origin": "https://evil.example"})],
        ids=["no-csrf-token", "wrong-csrf-token", "another-origin"],
    )  # fmt: skip
    def test_a_forged_form_stores_nothing(self, console, db, csrf, headers):
        anomaly_id = add_anomaly(db)
        assert silence_from(console, anomaly_id, csrf=csrf, **headers).status_code == 403
        assert stored(db) == []

    def test_an_unknown_incident_is_a_404_page(self, console, db):
        csrf = csrf_of(console.get("/console/silences").text)
        answer = console.post(
            "/console/incidents/424242/silence", data={"reason": REASON, "csrf": csrf}
        )
        assert answer.status_code == 404 and "anomaly 424242 does not exist" in answer.text
        assert stored(db) == []


class TestEndNow:
    def test_ends_it_as_the_console_user_and_releases_what_it_held(self, console, db):
        silence_from(console, add_anomaly(db))
        [(silence_id, *_)] = stored(db)
        held = add_anomaly(db)
        later = datetime.now(UTC) + timedelta(hours=1)
        # A Slack announcement the outbox holds for this silence (sentinelops/slack/silences.py).
        db.execute(
            "INSERT INTO notifications (kind, anomaly_id, severity, next_attempt_at, last_error)"
            " VALUES ('opened', %s, 'medium', %s, %s)",
            (held, later, held_error(silence_id, later)),
        )

        answer = end_now(console, silence_id)

        assert answer.status_code == 303
        assert answer.headers["location"] == f"/console/silences?ended={silence_id}"
        assert db.execute("SELECT ended_by, ends_at <= now() FROM silences").fetchall() == [
            ("console:alice", True)
        ]
        assert db.execute("SELECT next_attempt_at <= now() FROM notifications").fetchall() == [
            (True,)
        ]
        page = console.get(answer.headers["location"]).text
        assert f"Silence #{silence_id} ended" in page
        assert listed(page) == [silence_id] and endable(page) == []
        row = re.search(rf'<tr id="silence-{silence_id}".*?</tr>', page, re.S)[0]
        assert "expired" in row and "console:alice" in row

    def test_a_second_end_says_it_already_ended_and_changes_nothing(self, console, db):
        silence = add_silence(db, starts=-timedelta(hours=1), ends=timedelta(hours=1))
        stale = csrf_of(console.get("/console/silences").text)  # another tab, opened before
        assert end_now(console, silence).status_code == 303
        ended = db.execute("SELECT ends_at, ended_by FROM silences").fetchall()

        again = end_now(console, silence, csrf=stale)

        assert again.status_code == 409
        assert f"silence {silence} has already ended" in again.text
        assert listed(again.text) == [silence]
        assert db.execute("SELECT ends_at, ended_by FROM silences").fetchall() == ended

    def test_an_unknown_silence_is_a_404_page(self, console):
        answer = end_now(console, 424242)
        assert answer.status_code == 404 and "silence 424242 does not exist" in answer.text
