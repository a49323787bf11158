"""GET /api/v1/events: behind the token, filtered, paged with every item exactly once."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient

from tests.conftest import make_settings
from tests.support import TOKEN, auth, error_of, event_with, signed_headers
from webhook_service.main import create_app
from webhook_service.pagination import encode_cursor

WEBHOOK = "/api/v1/webhooks/stripe"
T0 = 1_780_000_000  # 2026-05-28


def deliver(client: TestClient, name: str, event_id: str, created: int) -> None:
    body = event_with(name, id=event_id, created=created)
    assert client.post(WEBHOOK, content=body, headers=signed_headers(body)).status_code == 200


def deliver_history(client):
    """Twelve events: six created in the same second (ties broken by id), two types."""
    ids = []
    for n in range(12):
        name = "charge.failed.json" if n % 2 else "charge.succeeded.json"
        created = T0 + (0 if n < 6 else n * 60)
        deliver(client, name, f"evt_test_{n:02d}", created)
        ids.append(f"evt_test_{n:02d}")
    return ids


@pytest.fixture
def history(client):
    return deliver_history(client)


def all_pages(client: TestClient, **params) -> list[dict]:
    items, cursor, pages = [], None, 0
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/events", params=query, headers=auth()).json()
        items += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        assert pages < 50


class TestListing:
    @pytest.mark.parametrize("limit", [1, 5, 12, 500])
    def test_pages_return_every_event_exactly_once_newest_first(self, client, history, limit):
        items = all_pages(client, limit=limit)
        assert sorted(i["id"] for i in items) == sorted(history)
        keys = [(i["created"], i["id"]) for i in items]
        assert keys == sorted(keys, reverse=True)

    def test_type_and_time_filters_combine(self, client, history):
        items = all_pages(client, type="charge.failed", since="2026-05-28T20:33:00Z", limit=2)
        assert [i["id"] for i in items] == ["evt_test_11", "evt_test_09", "evt_test_07"]
        until = all_pages(client, until="2026-05-28T20:26:41Z")
        assert {i["id"] for i in until} == {f"evt_test_{n:02d}" for n in range(6)}

    def test_a_time_without_a_zone_is_utc_whatever_the_database_session_zone(
        self, database_url, tmp_path, monkeypatch
    ):
        # The API's sessions in New York time: a zone-less `since` must still mean UTC.
        monkeypatch.setenv("PGTZ", "America/New_York")
        with TestClient(create_app(make_settings(database_url, tmp_path))) as client:
            deliver_history(client)
            naive = all_pages(client, type="charge.failed", since="2026-05-28T20:33:00")
            zoned = all_pages(client, type="charge.failed", since="2026-05-28T20:33:00Z")
        assert [i["id"] for i in naive] == [i["id"] for i in zoned] == [
            "evt_test_11", "evt_test_09", "evt_test_07"
        ]  # fmt: skip

    def test_list_items_carry_the_envelope_not_the_payload(self, client, history):
        item = client.get("/api/v1/events", params={"limit": 1}, headers=auth()).json()["items"][0]
        assert item["source"] == "webhook" and item["deliveries"] == 1
        assert item["created"].endswith("Z") and "payload" not in item

    @pytest.mark.parametrize(
        ("params", "error"),
        [
            pytest.param({"limit": 0}, "ValidationError", id="limit 0"),
            pytest.param({"limit": 501}, "ValidationError", id="limit 501"),
            pytest.param({"cursor": "bm90LW91cnM"}, "InvalidCursor", id="not our cursor"),
            pytest.param({"since": "yesterday"}, "ValidationError", id="since not a time"),
            pytest.param({"type": "charge\x00failed"}, "ValidationError", id="NUL in type"),
            pytest.param(
                {"cursor": encode_cursor("2026-05-28T20:33:00+00:00", "evt_\x00")},
                "InvalidCursor",
                id="forged cursor with NUL",
            ),
            pytest.param(
                {"cursor": base64.urlsafe_b64encode(b"[" * 3000 + b"]" * 3000).decode()},
                "ValidationError",  # over the cursor's length limit before it is decoded
                id="forged cursor nested 3000 deep",
            ),
        ],
    )
    def test_bad_query_is_422_with_the_error_shape(self, client, params, error):
        response = client.get("/api/v1/events", params=params, headers=auth())
        assert error_of(response) == (422, error)

    def test_an_id_postgresql_cannot_hold_is_422(self, client):
        response = client.get("/api/v1/events/evt_%00", headers=auth())
        assert error_of(response) == (422, "ValidationError")
        assert response.json()["detail"].startswith("event_id: ")

    def test_a_deeply_nested_event_reads_back_whole(self, client):
        # Signed and accepted by the webhook, so it must read back: pydantic gave up near 300.
        nested: dict = {"depth": 0}
        for depth in range(1, 400):
            nested = {"depth": depth, "inner": nested}
        event = json.loads(event_with("charge.failed.json", id="evt_deep"))
        event["data"]["object"]["metadata"] = nested
        body = json.dumps(event).encode()
        assert client.post(WEBHOOK, content=body, headers=signed_headers(body)).status_code == 200

        response = client.get("/api/v1/events/evt_deep", headers=auth())

        assert response.status_code == 200
        assert response.json()["payload"] == event
        assert response.json()["id"] == "evt_deep" and response.json()["deliveries"] == 1

    def test_unknown_event_is_404(self, client):
        response = client.get("/api/v1/events/evt_never", headers=auth())
        assert error_of(response) == (404, "NotFound")
        assert "evt_never" in response.json()["detail"]


class TestAuthentication:
    @pytest.mark.parametrize(
        "headers",
        [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}],
        ids=["no token", "wrong token", "wrong scheme"],
    )
    def test_reads_without_the_token_are_401(self, client, headers):
        response = client.get("/api/v1/events", headers=headers)
        assert error_of(response) == (401, "Unauthorized")
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert TOKEN not in response.text

    def test_any_of_several_tokens_is_accepted(self, database_url, tmp_path):
        settings = make_settings(database_url, tmp_path, SENTINELOPS_API_TOKEN="first,second")
        with TestClient(create_app(settings)) as client:
            assert client.get("/api/v1/events", headers=auth("second")).status_code == 200

    def test_no_token_configured_means_closed_not_open(self, database_url, tmp_path):
        settings = make_settings(database_url, tmp_path, SENTINELOPS_API_TOKEN="")
        with TestClient(create_app(settings)) as client:
            response = client.get("/api/v1/events")
        assert error_of(response) == (503, "ApiTokenNotConfigured")
        assert "SENTINELOPS_API_TOKEN" in response.json()["detail"]

    def test_public_reads_open_the_get_endpoints(self, database_url, tmp_path):
        settings = make_settings(database_url, tmp_path, SENTINELOPS_PUBLIC_READS="true")
        with TestClient(create_app(settings)) as client:
            assert client.get("/api/v1/events").status_code == 200
