"""The anomaly API: lifecycle with history, filters, sort orders, pages, authentication."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from sentinelops_pipelines.demo import seed_demo
from tests.conftest import live_server, make_settings
from tests.support import TOKEN, auth, error_of
from webhook_service.main import create_app

T0 = datetime(2026, 5, 1, tzinfo=UTC)
SEVERITIES = ["low", "medium", "high"]


def add_anomaly(
    db, *, severity="medium", rule="refund_spike", minutes=0, status="open", demo=False
) -> int:
    evidence = {"count": 7, **({"_demo": True} if demo else {})}
    anomaly_id = db.execute(
        "INSERT INTO anomalies (rule, scope, severity, status, title, window_start, window_end,"
        " detected_at, evidence) VALUES (%s, 'all', %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            rule,
            severity,
            status,
            f"{rule} {severity}",
            T0,
            T0 + timedelta(minutes=5),
            T0 + timedelta(minutes=minutes),
            Jsonb(evidence),
        ),
    ).fetchone()[0]
    db.execute(
        "INSERT INTO anomaly_history (anomaly_id, from_status, to_status, actor)"
        " VALUES (%s, NULL, 'open', 'rules')",
        (anomaly_id,),
    )
    return anomaly_id


def patch(client, anomaly_id, status, note=None, headers=None):
    body = {"status": status, **({"note": note} if note else {})}
    return client.patch(
        f"/api/v1/anomalies/{anomaly_id}", json=body, headers=auth() if headers is None else headers
    )


class TestLifecycle:
    @pytest.mark.parametrize(
        ("path", "last_code"),
        [
            pytest.param(["acknowledged"], 200, id="open to acknowledged"),
            pytest.param(["resolved"], 200, id="open to resolved"),
            pytest.param(["acknowledged", "resolved"], 200, id="acknowledged to resolved"),
            pytest.param(["acknowledged", "open"], 200, id="acknowledged back to open"),
            pytest.param(["resolved", "open"], 200, id="resolved reopened"),
            pytest.param(["open"], 409, id="open to open is a no-op"),
            pytest.param(["acknowledged", "acknowledged"], 409, id="acknowledging twice"),
            pytest.param(["resolved", "acknowledged"], 409, id="resolved cannot be acknowledged"),
            pytest.param(["resolved", "resolved"], 409, id="resolving twice"),
        ],
    )
    def test_transitions(self, client, db, path, last_code):
        anomaly_id = add_anomaly(db)
        for status in path[:-1]:
            assert patch(client, anomaly_id, status).status_code == 200
        response = patch(client, anomaly_id, path[-1])
        assert response.status_code == last_code
        if last_code == 409:
            assert error_of(response) == (409, "InvalidTransition")
            assert path[-1] in response.json()["detail"]
            history = client.get(f"/api/v1/anomalies/{anomaly_id}", headers=auth()).json()
            assert len(history["history"]) == len(path)  # nothing written for the refusal

    def test_history_records_each_change_with_stamps_and_notes(self, client, db):
        anomaly_id = add_anomaly(db)
        acked = patch(client, anomaly_id, "acknowledged", note="looking").json()
        assert acked["acknowledged_at"] and acked["resolved_at"] is None
        resolved = patch(client, anomaly_id, "resolved", note="bank outage over").json()
        assert resolved["status"] == "resolved" and resolved["resolved_at"]
        reopened = patch(client, anomaly_id, "open").json()
        assert reopened["resolved_at"] is None and reopened["acknowledged_at"] is None

        history = client.get(f"/api/v1/anomalies/{anomaly_id}", headers=auth()).json()["history"]
        assert [(h["from_status"], h["to_status"]) for h in history] == [
            (None, "open"),
            ("open", "acknowledged"),
            ("acknowledged", "resolved"),
            ("resolved", "open"),
        ]
        assert [h["note"] for h in history][1:3] == ["looking", "bank outage over"]
        assert history[1]["actor"].startswith("api:") and TOKEN not in str(history)
        assert all(h["at"].endswith("Z") for h in history)

    def test_concurrent_patches_leave_one_consistent_history(self, settings, db):
        anomaly_id = add_anomaly(db)
        barrier = threading.Barrier(10)

        def acknowledge(_):
            with httpx.Client(base_url=base, timeout=30) as http:
                barrier.wait()
                return http.patch(
                    f"/api/v1/anomalies/{anomaly_id}",
                    json={"status": "acknowledged"},
                    headers=auth(),
                ).status_code

        with live_server(settings) as base, ThreadPoolExecutor(10) as pool:
            codes = sorted(pool.map(acknowledge, range(10)))
        assert codes == [200] + [409] * 9
        rows = db.execute(
            "SELECT from_status, to_status FROM anomaly_history WHERE anomaly_id = %s ORDER BY id",
            (anomaly_id,),
        ).fetchall()
        assert rows == [(None, "open"), ("open", "acknowledged")]

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            pytest.param({"status": "snoozed"}, "status", id="unknown status"),
            pytest.param({}, "status", id="no status"),
            pytest.param({"status": "resolved", "extra": 1}, "extra", id="unknown field"),
            # PostgreSQL text cannot hold NUL: refused up front, not a 500 from the database.
            pytest.param({"status": "resolved", "note": "a\u0000b"}, "note", id="NUL in note"),
        ],
    )
    def test_bad_bodies_are_422_and_change_nothing(self, client, db, body, field):
        anomaly_id = add_anomaly(db)
        response = client.patch(f"/api/v1/anomalies/{anomaly_id}", json=body, headers=auth())
        assert error_of(response) == (422, "ValidationError")
        assert response.json()["detail"].startswith(f"{field}: ")
        assert db.execute("SELECT status FROM anomalies").fetchone() == ("open",)

    def test_unknown_anomaly_is_404(self, client):
        for response in (
            patch(client, 999_999, "resolved"),
            client.get("/api/v1/anomalies/999999", headers=auth()),
        ):
            assert error_of(response) == (404, "NotFound")
            assert "999999" in response.json()["detail"]


class TestListing:
    @pytest.fixture
    def twelve(self, db):
        return [
            add_anomaly(
                db,
                severity=SEVERITIES[n % 3],
                minutes=n // 2,
                rule="refund_spike" if n % 2 else "dispute_spike",
                status="resolved" if n % 4 == 0 else "open",
            )
            for n in range(12)
        ]

    def pages(self, client, **params):
        items, cursor = [], None
        for _ in range(50):
            query = {**params, **({"cursor": cursor} if cursor else {})}
            page = client.get("/api/v1/anomalies", params=query, headers=auth()).json()
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items
        raise AssertionError("pagination never ended")

    @pytest.mark.parametrize("limit", [1, 5, 500])
    @pytest.mark.parametrize("sort", ["severity_desc", "detected_desc", "detected_asc"])
    def test_every_anomaly_appears_exactly_once_in_sort_order(self, client, twelve, sort, limit):
        items = self.pages(client, sort=sort, limit=limit)
        assert sorted(i["id"] for i in items) == sorted(twelve)
        rank = {"low": 1, "medium": 2, "high": 3}
        if sort == "severity_desc":
            assert [rank[i["severity"]] for i in items] == sorted(
                (rank[i["severity"]] for i in items), reverse=True
            )
            for a, b in zip(items, items[1:]):
                if a["severity"] == b["severity"]:
                    assert (a["detected_at"], a["id"]) > (b["detected_at"], b["id"])
        else:
            ordered = sorted(
                items, key=lambda i: (i["detected_at"], i["id"]), reverse=sort == "detected_desc"
            )
            assert items == ordered

    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            pytest.param(
                {"only_open": "true"}, lambda a: a["status"] != "resolved", id="only_open"
            ),
            pytest.param({"status": "resolved"}, lambda a: a["status"] == "resolved", id="status"),
            pytest.param({"severity": "high"}, lambda a: a["severity"] == "high", id="severity"),
            pytest.param(
                {"rule": "dispute_spike"}, lambda a: a["rule"] == "dispute_spike", id="rule"
            ),
        ],
    )
    def test_filters(self, client, twelve, params, expected):
        everything = self.pages(client, limit=500)
        filtered = self.pages(client, limit=2, **params)
        assert {i["id"] for i in filtered} == {i["id"] for i in everything if expected(i)}
        assert filtered

    def test_demo_only_shows_the_seeded_demo_anomalies(self, client, database_url, twelve):
        first = seed_demo(database_url)
        assert seed_demo(database_url) == first  # idempotent
        items = self.pages(client, demo_only="true")
        assert sorted(i["id"] for i in items) == sorted(first)
        assert {i["severity"] for i in items} == {"low", "medium", "high"}
        assert all(i["title"].startswith("[demo]") and i["evidence"]["_demo"] for i in items)

    @pytest.mark.parametrize(
        ("params", "error"),
        [
            ({"limit": 0}, "ValidationError"),
            ({"limit": 501}, "ValidationError"),
            ({"sort": "random"}, "ValidationError"),
            ({"status": "closed"}, "ValidationError"),
            ({"cursor": "zzz"}, "InvalidCursor"),
            ({"rule": "payment\x00failure_spike"}, "ValidationError"),
        ],
        ids=str,
    )
    def test_bad_queries_are_422(self, client, params, error):
        response = client.get("/api/v1/anomalies", params=params, headers=auth())
        assert error_of(response) == (422, error)

    def test_a_cursor_from_another_sort_is_refused(self, client, twelve):
        page = client.get(
            "/api/v1/anomalies", params={"limit": 2, "sort": "detected_asc"}, headers=auth()
        ).json()
        response = client.get(
            "/api/v1/anomalies",
            headers=auth(),
            params={"sort": "severity_desc", "cursor": page["next_cursor"]},
        )
        assert error_of(response) == (422, "InvalidCursor")


class TestAuthentication:
    def test_patch_needs_the_token_even_with_public_reads(self, database_url, tmp_path, db):
        anomaly_id = add_anomaly(db)
        settings = make_settings(database_url, tmp_path, SENTINELOPS_PUBLIC_READS="true")
        with TestClient(create_app(settings)) as client:
            assert client.get("/api/v1/anomalies").status_code == 200
            response = patch(client, anomaly_id, "resolved", headers={})
            assert error_of(response) == (401, "Unauthorized")
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert patch(client, anomaly_id, "resolved").status_code == 200

    @pytest.mark.parametrize("path", ["/api/v1/anomalies", "/api/v1/anomalies/1"])
    def test_reads_need_the_token(self, client, path):
        response = client.get(path)
        assert error_of(response) == (401, "Unauthorized")
        assert response.headers["www-authenticate"].startswith("Bearer")

    def test_history_names_who_acted_by_the_name_their_token_carries(
        self, database_url, tmp_path, db
    ):
        anomaly_id = add_anomaly(db)
        tokens = "alice=so_alice_0123456789,so_unnamed_0123456789"
        settings = make_settings(database_url, tmp_path, SENTINELOPS_API_TOKEN=tokens)

        def read_history(client: TestClient, anomaly_id: int) -> list[dict]:
            path = f"/api/v1/anomalies/{anomaly_id}"
            return client.get(path, headers=auth("so_alice_0123456789")).json()["history"]

        with TestClient(create_app(settings)) as client:
            assert patch(client, anomaly_id, "acknowledged", headers=auth("so_alice_0123456789"))
            assert patch(client, anomaly_id, "resolved", headers=auth("so_unnamed_0123456789"))
            history = read_history(client, anomaly_id)
        with TestClient(create_app(settings)) as client:  # a restart: same home, same key
            patch(client, anomaly_id, "open", headers=auth("so_unnamed_0123456789"))
            again = read_history(client, anomaly_id)
        alice, unnamed = history[1]["actor"], history[2]["actor"]
        assert alice == "api:alice"
        # An unnamed token's tag is keyed by the server: not the token's bare hash (which anyone
        # could check token guesses against), and the same after a restart.
        bare_hash = hashlib.sha256(b"so_unnamed_0123456789").hexdigest()
        assert unnamed.startswith("api:") and unnamed[4:] not in bare_hash
        assert again[3]["actor"] == unnamed
        assert (tmp_path / "session-key").stat().st_mode & 0o777 == 0o600
