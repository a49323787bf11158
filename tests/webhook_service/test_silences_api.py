"""The silence API: create, list in order, end early (releasing what it held), refusals that
write nothing, authentication; and the anomaly JSON's silenced_by."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from sentinelops.slack.silences import held_error
from tests.conftest import make_settings
from tests.support import TOKEN, auth, error_of
from tests.webhook_service.test_anomalies_api import add_anomaly
from webhook_service.main import create_app


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def create(client, headers=None, **body):
    body.setdefault("ends_at", iso(now() + timedelta(hours=2)))
    body.setdefault("reason", "planned maintenance")
    return client.post(
        "/api/v1/silences", json=body, headers=auth() if headers is None else headers
    )


def count(db) -> int:
    return db.execute("SELECT count(*) FROM silences").fetchone()[0]


def add_silence(db, *, starts: timedelta, ends: timedelta, rule="refund_spike") -> int:
    """A silence in any window, past ones included (which the API refuses to create)."""
    return db.execute(
        "INSERT INTO silences (rule, starts_at, ends_at, reason, created_by)"
        " VALUES (%s, now() + %s, now() + %s, 'test', 'api:test') RETURNING id",
        (rule, starts, ends),
    ).fetchone()[0]


class TestCreate:
    def test_a_silence_is_created_active_by_its_creator(self, database_url, tmp_path, db):
        settings = make_settings(database_url, tmp_path, SENTINELOPS_API_TOKEN=f"alice={TOKEN}")
        with TestClient(create_app(settings)) as client:
            response = create(client, rule="refund_spike")
        assert response.status_code == 201
        silence = response.json()
        assert silence["rule"] == "refund_spike" and silence["scope"] is None
        assert silence["created_by"] == "api:alice" and silence["ended_by"] is None
        assert silence["state"] == "active" and silence["reason"] == "planned maintenance"
        assert all(silence[k].endswith("Z") for k in ("starts_at", "ends_at", "created_at"))
        stored = db.execute("SELECT id, created_by FROM silences").fetchall()
        assert stored == [(silence["id"], "api:alice")]

    def test_a_later_start_is_upcoming_and_a_time_without_zone_is_utc(self, client):
        starts = now() + timedelta(hours=1)
        ends = now() + timedelta(hours=3)
        naive = {"starts_at": starts.replace(tzinfo=None).isoformat(), "ends_at": iso(ends)}
        silence = create(client, scope="acct_1", **naive).json()
        assert silence["state"] == "upcoming" and silence["rule"] is None
        read = datetime.fromisoformat(silence["starts_at"])
        assert abs(read - starts) < timedelta(milliseconds=1)

    def test_a_start_a_few_seconds_ago_is_accepted(self, client):
        response = create(client, rule="x", starts_at=iso(now() - timedelta(seconds=20)))
        assert response.status_code == 201 and response.json()["state"] == "active"

    @pytest.mark.parametrize(
        ("body", "says"),
        [
            pytest.param({}, "a rule, a scope", id="no rule or scope"),
            pytest.param({"rule": ""}, "rule", id="empty rule"),
            pytest.param({"scope": "s" * 101}, "scope", id="scope too long"),
            pytest.param({"rule": "a\u0000b"}, "rule", id="NUL in rule"),
            pytest.param(
                {"rule": "r", "ends_at": -timedelta(minutes=1)},
                "ends_at must be in the future",
                id="ends in the past",
            ),
            pytest.param(
                {"rule": "r", "ends_at": timedelta(days=30, minutes=5)},
                "at most 30 days",
                id="ends more than 30 days ahead",
            ),
            pytest.param(
                {
                    "rule": "r",
                    "starts_at": timedelta(hours=3),
                    "ends_at": timedelta(hours=2),
                },
                "starts_at must be before ends_at",
                id="starts after it ends",
            ),
            pytest.param(
                {"rule": "r", "starts_at": -timedelta(minutes=5)},
                "more than a minute in the past",
                id="starts in the past",
            ),
            pytest.param({"rule": "r", "reason": ""}, "reason", id="empty reason"),
            pytest.param({"rule": "r", "reason": " \t\n"}, "reason must say", id="blank reason"),
            pytest.param({"rule": "r", "reason": "r" * 501}, "reason", id="reason too long"),
            pytest.param({"rule": "r", "ends_at": None}, "ends_at", id="no end"),
            pytest.param({"rule": "r", "extra": 1}, "extra", id="unknown field"),
        ],
    )
    def test_bad_silences_are_422_and_write_nothing(self, client, db, body, says):
        # Times are offsets from now, taken when the test runs, not when it is collected.
        body = {k: iso(now() + v) if isinstance(v, timedelta) else v for k, v in body.items()}
        before = count(db)
        response = create(client, **body)
        assert error_of(response) == (422, "ValidationError")
        assert says in response.json()["detail"]
        assert count(db) == before == 0


class TestListing:
    def test_active_and_upcoming_by_start_then_expired_latest_ended_first(self, client, db):
        hour = timedelta(hours=1)
        old = add_silence(db, starts=-5 * hour, ends=-4 * hour)
        recent = add_silence(db, starts=-3 * hour, ends=-1 * hour)
        later = add_silence(db, starts=2 * hour, ends=3 * hour)
        active = add_silence(db, starts=-2 * hour, ends=hour)
        soon = add_silence(db, starts=hour, ends=5 * hour)

        items = client.get("/api/v1/silences", headers=auth()).json()["items"]
        assert [i["id"] for i in items] == [active, soon, later, recent, old]
        assert [i["state"] for i in items] == [
            "active",
            "upcoming",
            "upcoming",
            "expired",
            "expired",
        ]
        limited = client.get("/api/v1/silences", params={"limit": 2}, headers=auth()).json()
        assert [i["id"] for i in limited["items"]] == [active, soon]

    @pytest.mark.parametrize("limit", [0, 501])
    def test_a_bad_limit_is_422(self, client, limit):
        response = client.get("/api/v1/silences", params={"limit": limit}, headers=auth())
        assert error_of(response) == (422, "ValidationError")


class TestEnd:
    def test_ending_sets_the_end_now_and_who_ended_it_once(self, client, db):
        silence = create(client, rule="refund_spike").json()
        path = f"/api/v1/silences/{silence['id']}"

        ended = client.delete(path, headers=auth())
        assert ended.status_code == 200
        body = ended.json()
        assert body["state"] == "expired" and body["ended_by"].startswith("api:")
        assert datetime.fromisoformat(body["ends_at"]) < datetime.fromisoformat(silence["ends_at"])
        (stored_end, is_past) = db.execute(
            "SELECT ends_at, ends_at <= now() FROM silences WHERE id = %s", (silence["id"],)
        ).fetchone()
        assert is_past and abs(stored_end - now()) < timedelta(minutes=1)

        again = client.delete(path, headers=auth())
        assert error_of(again) == (409, "AlreadyExpired")
        assert db.execute("SELECT ends_at FROM silences").fetchone() == (stored_end,)

    def test_an_upcoming_silence_can_be_called_off(self, client):
        silence = create(
            client,
            rule="r",
            starts_at=iso(now() + timedelta(hours=1)),
            ends_at=iso(now() + timedelta(hours=2)),
        ).json()
        ended = client.delete(f"/api/v1/silences/{silence['id']}", headers=auth()).json()
        assert ended["state"] == "expired"

    def test_an_expired_silence_is_409_and_an_unknown_one_404(self, client, db):
        expired = add_silence(db, starts=-timedelta(hours=2), ends=-timedelta(hours=1))
        response = client.delete(f"/api/v1/silences/{expired}", headers=auth())
        assert error_of(response) == (409, "AlreadyExpired")
        response = client.delete("/api/v1/silences/999999", headers=auth())
        assert error_of(response) == (404, "NotFound")
        assert "999999" in response.json()["detail"]
        assert db.execute("SELECT ended_by FROM silences").fetchall() == [(None,)]

    def test_ending_makes_what_it_held_due_now(self, client, db):
        silence = create(client, rule="refund_spike").json()
        held, other = add_anomaly(db), add_anomaly(db)
        later = now() + timedelta(hours=1)
        # As the outbox leaves a row it holds (sentinelops.slack.silences.held_error), and one
        # held by another silence.
        for anomaly_id, holder in ((held, silence["id"]), (other, silence["id"] + 1)):
            db.execute(
                "INSERT INTO notifications (kind, anomaly_id, severity, next_attempt_at,"
                " last_error) VALUES ('opened', %s, 'medium', %s, %s)",
                (anomaly_id, later, held_error(holder, later)),
            )

        assert client.delete(f"/api/v1/silences/{silence['id']}", headers=auth()).status_code == 200

        due = dict(
            db.execute("SELECT anomaly_id, next_attempt_at <= now() FROM notifications").fetchall()
        )
        assert due == {held: True, other: False}


class TestAnomalies:
    def test_the_anomaly_json_names_the_silence_that_held_it(self, client, db):
        anomaly_id = add_anomaly(db)
        path = f"/api/v1/anomalies/{anomaly_id}"
        assert client.get(path, headers=auth()).json()["silenced_by"] is None
        silence = add_silence(db, starts=-timedelta(hours=1), ends=timedelta(hours=1))
        db.execute("UPDATE anomalies SET silenced_by = %s WHERE id = %s", (silence, anomaly_id))
        assert client.get(path, headers=auth()).json()["silenced_by"] == silence
        listed = client.get("/api/v1/anomalies", headers=auth()).json()["items"]
        assert [a["silenced_by"] for a in listed] == [silence]


class TestAuthentication:
    @pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
    def test_every_route_needs_the_token(self, client, db, method):
        path = "/api/v1/silences" + ("/1" if method == "DELETE" else "")
        body = {"rule": "r", "ends_at": iso(now() + timedelta(hours=1)), "reason": "x"}
        response = client.request(method, path, json=body if method == "POST" else None)
        assert error_of(response) == (401, "Unauthorized")
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert count(db) == 0

    def test_public_reads_open_the_list_but_not_the_writes(self, database_url, tmp_path, db):
        settings = make_settings(database_url, tmp_path, SENTINELOPS_PUBLIC_READS="true")
        with TestClient(create_app(settings)) as client:
            assert client.get("/api/v1/silences").json() == {"items": []}
            assert error_of(create(client, headers={}, rule="r")) == (401, "Unauthorized")
            assert create(client, rule="r").status_code == 201
