"""What an attacker or a busy database can do to the API: bounded bodies, the token checked
before any body is read, timeouts instead of hangs, and one error shape even for a bug."""

from __future__ import annotations

import json
import socket
import time

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.conftest import live_server, make_settings
from tests.support import TOKEN, auth
from tests.webhook_service.test_anomalies_api import add_anomaly
from webhook_service.main import create_app


def raw_request(base: str, head: str, body: bytes) -> str:
    """Send a request head and part of its body; the answer that comes without the rest."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head.encode() + body)
        return sock.recv(4096).decode()


def patch_head(length: str, token: str | None = None) -> str:
    authorization = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"PATCH /api/v1/anomalies/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"{authorization}{length}\r\n\r\n"
    )


class TestBodies:
    @pytest.mark.parametrize(
        ("length", "sliver"),
        [
            pytest.param("Content-Length: 10000000", b'{"status": "', id="declared 10 MB"),
            pytest.param(
                "Transfer-Encoding: chunked",
                b"c\r\n" + b'{"status": "' + b"\r\n",
                id="chunked, no length",
            ),  # fmt: skip
        ],
    )
    def test_a_write_without_the_token_is_refused_before_its_body_is_read(
        self, settings, length, sliver
    ):
        with live_server(settings) as base:
            answer = raw_request(base, patch_head(length), sliver)
        assert answer.startswith("HTTP/1.1 401")
        assert '"error":"Unauthorized"' in answer

    def test_a_declared_body_over_the_limit_is_413_before_it_is_read(self, settings):
        with live_server(settings) as base:
            answer = raw_request(base, patch_head("Content-Length: 10000000", TOKEN), b"{")
        assert answer.startswith("HTTP/1.1 413")
        assert '"error":"PayloadTooLarge"' in answer

    def test_a_streamed_body_is_cut_off_at_the_limit(self, database_url, tmp_path, db):
        anomaly_id = add_anomaly(db)
        settings = make_settings(database_url, tmp_path, SENTINELOPS_API_MAX_BYTES="1024")
        note = "x" * 2000  # a valid note (up to 2000 characters), but the body exceeds 1 KiB

        def chunks():
            body = json.dumps({"status": "acknowledged", "note": note}).encode()
            for start in range(0, len(body), 256):
                yield body[start : start + 256]

        with live_server(settings) as base:
            response = httpx.patch(
                f"{base}/api/v1/anomalies/{anomaly_id}", content=chunks(), headers=auth()
            )
            small = httpx.patch(
                f"{base}/api/v1/anomalies/{anomaly_id}", json={"status": "resolved"},
                headers=auth(),
            )  # fmt: skip
        assert response.status_code == 413
        assert response.json()["error"] == "PayloadTooLarge"
        assert small.status_code == 200
        statuses = db.execute(
            "SELECT to_status FROM anomaly_history WHERE anomaly_id = %s ORDER BY id", (anomaly_id,)
        ).fetchall()
        assert [s for (s,) in statuses] == ["open", "resolved"]  # the refused change left none


class TestTimeouts:
    def test_a_patch_on_a_locked_anomaly_answers_503_not_a_hang(self, database_url, tmp_path, db):
        anomaly_id = add_anomaly(db)
        settings = make_settings(database_url, tmp_path, SENTINELOPS_DB_LOCK_TIMEOUT="0.3")
        with psycopg.connect(database_url) as holder, live_server(settings) as base:
            # A long backfill holding the anomaly's row.
            holder.execute("SELECT 1 FROM anomalies WHERE id = %s FOR UPDATE", (anomaly_id,))
            started = time.monotonic()
            response = httpx.patch(
                f"{base}/api/v1/anomalies/{anomaly_id}",
                json={"status": "acknowledged"},
                headers=auth(),
                timeout=10,
            )
            waited = time.monotonic() - started
            holder.rollback()
        assert response.status_code == 503
        assert response.json()["error"] == "DatabaseBusy"
        assert response.headers["retry-after"] == "5"
        assert waited < 5
        status = db.execute("SELECT status FROM anomalies WHERE id = %s", (anomaly_id,)).fetchone()
        assert status == ("open",)


class TestErrorShape:
    def test_an_unexpected_failure_answers_the_error_shape_without_internals(
        self, settings, db, caplog
    ):
        # Not a lost connection: a schema the code does not expect (a bad deploy, a bug).
        db.execute("ALTER TABLE anomalies RENAME TO anomalies_moved")
        try:
            with TestClient(create_app(settings), raise_server_exceptions=False) as client:
                response = client.get("/api/v1/anomalies", headers=auth())
        finally:
            db.execute("ALTER TABLE anomalies_moved RENAME TO anomalies")
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {
            "error": "InternalError",
            "detail": "an unexpected error occurred; it was logged",
        }
        assert "UndefinedTable on GET /api/v1/anomalies" in caplog.text
