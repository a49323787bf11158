"""POST /api/v1/webhooks/stripe: every event stored exactly once, every rejection explained."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.conftest import live_server, make_settings
from tests.support import (
    EVENT_FIXTURES,
    OLD_SECRET,
    SECRET,
    auth,
    event_with,
    fixture_bytes,
    fixture_event,
    sign,
    signed_headers,
)
from webhook_service.main import create_app

URL = "/api/v1/webhooks/stripe"


def metric(client: TestClient, outcome: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'sentinelops_webhook_requests_total{{outcome="{outcome}"}}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no counter for outcome {outcome}")


def stored(db: psycopg.Connection) -> list[tuple]:
    return db.execute("SELECT id, deliveries, source FROM stripe_events ORDER BY id").fetchall()


def rejections(db: psycopg.Connection) -> list[str]:
    return [r[0] for r in db.execute("SELECT reason FROM webhook_rejections ORDER BY id")]


class TestStoring:
    @pytest.mark.parametrize("name", EVENT_FIXTURES)
    def test_each_fixture_is_stored_with_its_envelope(self, client, db, name):
        body = fixture_bytes(name)
        event = fixture_event(name)

        response = client.post(URL, content=body, headers=signed_headers(body))

        assert response.status_code == 200, response.text
        assert response.json() == {"id": event["id"], "stored": True, "duplicate": False}
        shown = client.get(f"/api/v1/events/{event['id']}", headers=auth()).json()
        assert shown["type"] == event["type"]
        assert shown["source"] == "webhook" and shown["deliveries"] == 1
        assert shown["livemode"] is event["livemode"]
        assert shown["created"] == time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(event["created"])
        )
        assert shown["payload"] == event  # the raw event, whole

    def test_redelivery_answers_2xx_and_counts_without_a_second_row(self, client, db):
        body = fixture_bytes("charge.failed.json")
        for _ in range(3):
            response = client.post(URL, content=body, headers=signed_headers(body))
            assert response.status_code == 200
        assert response.json()["duplicate"] is True
        assert stored(db) == [(fixture_event("charge.failed.json")["id"], 3, "webhook")]
        assert metric(client, "stored") == 1 and metric(client, "duplicate") == 2

    def test_fifty_concurrent_deliveries_of_one_event_make_one_row(self, settings, db):
        body = fixture_bytes("charge.succeeded.json")
        start = threading.Barrier(50)

        def deliver(_: int) -> tuple[int, bool]:
            headers = signed_headers(body)
            with httpx.Client(base_url=base, timeout=30) as http:
                start.wait()
                response = http.post(URL, content=body, headers=headers)
                return response.status_code, response.json()["stored"]

        with live_server(settings) as base, ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(deliver, range(50)))

        assert [code for code, _ in answers] == [200] * 50
        assert sum(new for _, new in answers) == 1  # one "stored", 49 duplicates
        assert stored(db) == [(fixture_event("charge.succeeded.json")["id"], 50, "webhook")]

    def test_a_rotated_out_secret_still_verifies_during_the_rotation(
        self, database_url, tmp_path, db
    ):
        settings = make_settings(
            database_url, tmp_path, STRIPE_WEBHOOK_SECRET=f"{SECRET},{OLD_SECRET}"
        )
        body = fixture_bytes("invoice.paid.json")
        with TestClient(create_app(settings)) as client:
            response = client.post(URL, content=body, headers=signed_headers(body, OLD_SECRET))
        assert response.status_code == 200
        assert len(stored(db)) == 1


def _header_without_v1(body: bytes) -> dict:
    return {"Stripe-Signature": f"t={int(time.time())},v0=abc"}


def _two_timestamps(body: bytes) -> dict:
    now = int(time.time())
    return {"Stripe-Signature": f"t={now}," + sign(body, timestamp=now)}


REJECTIONS = [
    pytest.param(
        lambda b: {},
        b"",
        "missing_header",
        400,
        "invalid_signature",
        id="no Stripe-Signature header",
    ),
    pytest.param(
        lambda b: {"Stripe-Signature": "garbage"},
        b"",
        "malformed_header",
        400,
        "invalid_signature",
        id="header without t= and v1=",
    ),
    pytest.param(
        _header_without_v1,
        b"",
        "malformed_header",
        400,
        "invalid_signature",
        id="header with no v1 signature",
    ),
    pytest.param(
        _two_timestamps,
        b"",
        "malformed_header",
        400,
        "invalid_signature",
        id="two t= values: ours and Stripe's library would read different ones",
    ),
    pytest.param(
        lambda b: signed_headers(b, timestamp=int(time.time()) - 301),
        b"",
        "timestamp_out_of_tolerance",
        400,
        "invalid_signature",
        id="signed 301 s ago: a replay",
    ),
    pytest.param(
        lambda b: signed_headers(b, secret="whsec_someone_else"),
        b"",
        "signature_mismatch",
        400,
        "invalid_signature",
        id="signed with another secret",
    ),
    pytest.param(
        lambda b: signed_headers(b"{}"),
        b"",
        "signature_mismatch",
        400,
        "invalid_signature",
        id="signature of another body",
    ),
    pytest.param(
        lambda b: signed_headers(b),
        b"{not json",
        "malformed_json",
        400,
        "malformed",
        id="signed body that is not JSON",
    ),
    pytest.param(
        lambda b: signed_headers(b),
        b'{"object": "list", "data": []}',
        "malformed_json",
        400,
        "malformed",
        id="signed JSON that is not an event",
    ),
    pytest.param(
        lambda b: signed_headers(b),
        b"x" * (1024 * 1024 + 1),
        "too_large",
        413,
        "too_large",
        id="one byte over 1 MiB",
    ),
]


class TestRejections:
    @pytest.mark.parametrize(("headers_for", "body", "reason", "status", "outcome"), REJECTIONS)
    def test_rejection_is_explained_recorded_and_stores_nothing(
        self, client, db, headers_for, body, reason, status, outcome
    ):
        body = body or fixture_bytes("charge.failed.json")

        response = client.post(URL, content=body, headers=headers_for(body))

        assert response.status_code == status
        assert response.json()["reason"] == reason
        assert set(response.json()) >= {"error", "detail"}
        assert stored(db) == []
        assert rejections(db) == [reason]
        assert metric(client, outcome) == 1

    def test_rejection_row_keeps_size_hash_and_a_capped_excerpt_only(self, client, db):
        body = event_with("charge.failed.json", description="x" * 5000)
        client.post(URL, content=body, headers=signed_headers(body, "whsec_wrong"))
        size, digest, excerpt = db.execute(
            "SELECT body_size, body_sha256, excerpt FROM webhook_rejections"
        ).fetchone()
        assert size == len(body)
        assert len(digest) == 64
        assert len(excerpt) == 256 and body.decode().startswith(excerpt)

    @pytest.mark.parametrize("framing", ["content-length", "chunked"])
    def test_oversized_body_is_refused_before_it_is_read(self, database_url, tmp_path, db, framing):
        settings = make_settings(database_url, tmp_path, SENTINELOPS_WEBHOOK_MAX_BYTES=100)
        length = (
            "Content-Length: 10000000"
            if framing == "content-length"
            else "Transfer-Encoding: chunked"
        )
        head = (
            f"POST {URL} HTTP/1.1\r\nHost: x\r\nStripe-Signature: t=1,v1=a\r\n{length}\r\n\r\n"
        ).encode()
        chunk = b"64\r\n" + b"x" * 100 + b"\r\n" if framing == "chunked" else b"x" * 100
        with live_server(settings) as base:
            host, port = base.removeprefix("http://").split(":")
            with socket.create_connection((host, int(port)), timeout=5) as sock:
                # Send a sliver of the announced 10 MB and wait: the answer must not need the rest.
                sock.sendall(head + chunk + chunk)
                answer = sock.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 413")
        assert '"reason":"too_large"' in answer
        assert rejections(db) == ["too_large"]


class TestUnavailable:
    def test_no_secret_configured_answers_503_and_says_why(self, database_url, tmp_path, db):
        settings = make_settings(database_url, tmp_path, STRIPE_WEBHOOK_SECRET="")
        body = fixture_bytes("charge.failed.json")
        with TestClient(create_app(settings)) as client:
            response = client.post(URL, content=body, headers=signed_headers(body))
        assert response.status_code == 503
        assert "STRIPE_WEBHOOK_SECRET" in response.json()["detail"]
        assert stored(db) == []

    def test_database_down_answers_503_fast_and_a_retry_stores_once(
        self, client, database_url, tmp_path, db
    ):
        down = make_settings("postgresql://postgres@127.0.0.1:1/nowhere", tmp_path)
        body = fixture_bytes("payment_intent.payment_failed.json")
        with TestClient(create_app(down)) as down_client:
            started = time.monotonic()
            response = down_client.post(URL, content=body, headers=signed_headers(body))
            elapsed = time.monotonic() - started
            assert metric(down_client, "unavailable") == 1
        assert response.status_code == 503
        assert response.json()["error"] == "DatabaseUnavailable"
        assert elapsed < 5
        assert stored(db) == []

        # Stripe retries; the retry lands on a healthy service and is stored once, not twice.
        retry = client.post(URL, content=body, headers=signed_headers(body))
        assert retry.json()["stored"] is True
        assert [row[1] for row in stored(db)] == [1]

    def test_read_only_database_answers_503_so_stripe_retries(self, settings, db, monkeypatch):
        # A server that turned read-only (a replica after a failover) answers every INSERT with
        # an error that is not a lost connection; the event is not stored all the same.
        monkeypatch.setenv("PGOPTIONS", "-c default_transaction_read_only=on")
        body = fixture_bytes("charge.failed.json")
        with TestClient(create_app(settings)) as client:
            response = client.post(URL, content=body, headers=signed_headers(body))
        assert response.status_code == 503
        assert response.json()["error"] == "DatabaseUnavailable"
        assert response.headers["retry-after"]
        assert stored(db) == []

    def test_database_down_under_load_every_sender_gets_503_within_5_s(self, tmp_path, db):
        # Group commit must not make a request wait for the writes queued before it: with one
        # write allowed at a time, the twelfth request would otherwise wait ~12 pool timeouts.
        down = make_settings(
            "postgresql://postgres@127.0.0.1:1/nowhere", tmp_path, SENTINELOPS_DB_POOL_SIZE="2"
        )
        bodies = [event_with("charge.failed.json", id=f"evt_down_{n}") for n in range(12)]

        def deliver(body: bytes) -> tuple[int, float]:
            with httpx.Client(base_url=base, timeout=30) as http:
                started = time.monotonic()
                code = http.post(URL, content=body, headers=signed_headers(body)).status_code
                return code, time.monotonic() - started

        with live_server(down) as base, ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(deliver, bodies))

        assert [code for code, _ in answers] == [503] * len(bodies)
        assert max(seconds for _, seconds in answers) < 5
        assert stored(db) == []

    def test_signature_header_value_never_reaches_the_response(self, client):
        body = fixture_bytes("charge.failed.json")
        header = sign(body, "whsec_other")
        response = client.post(URL, content=body, headers={"Stripe-Signature": header})
        assert header.split("v1=")[1] not in response.text


@pytest.mark.parametrize(("prepare", "expected"), [("true", True), ("false", False)])
def test_prepared_statements_can_be_turned_off_for_a_transaction_pooler(
    database_url, tmp_path, db, prepare, expected
):
    # PgBouncer in transaction mode hands each statement to any server connection, so one
    # prepared on one connection is missing on the next: SENTINELOPS_DB_PREPARE=false.
    settings = make_settings(
        database_url, tmp_path, SENTINELOPS_DB_PREPARE=prepare, SENTINELOPS_DB_POOL_SIZE="1"
    )
    with TestClient(create_app(settings)) as client:
        for name in EVENT_FIXTURES[:8]:  # psycopg prepares a statement on its 5th run
            body = fixture_bytes(name)
            assert client.post(URL, content=body, headers=signed_headers(body)).status_code == 200

        async def prepared_on_the_pools_connection() -> int:
            async with client.app.state.pool.connection() as conn:
                cur = await conn.execute("SELECT count(*) FROM pg_prepared_statements")
                return (await cur.fetchone())[0]

        assert (client.portal.call(prepared_on_the_pools_connection) > 0) is expected
    assert len(stored(db)) == 8
