"""Health and metrics: open to probes, honest about the database."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import make_settings
from tests.support import event_with, signed_headers
from webhook_service.main import create_app


def test_health_reports_the_database_and_the_latest_event(client):
    body = event_with("charge.succeeded.json", created=1_780_000_000)
    client.post("/api/v1/webhooks/stripe", content=body, headers=signed_headers(body))
    health = client.get("/api/v1/health")
    assert health.status_code == 200
    assert health.json()["database"] == "reachable"
    assert health.json()["latest_event_at"] == "2026-05-28T20:26:40Z"


def test_health_is_503_when_the_database_is_down(tmp_path):
    settings = make_settings("postgresql://postgres@127.0.0.1:1/nowhere", tmp_path)
    with TestClient(create_app(settings)) as client:
        health = client.get("/api/v1/health")
    body = health.json()
    # The error shape, plus the field a probe reads on a 200 too.
    assert (health.status_code, body["error"], body["database"]) == (
        503,
        "DatabaseUnavailable",
        "unreachable",
    )
    assert body["detail"]


def test_metrics_expose_every_webhook_outcome_and_the_latency_histogram(client):
    text = client.get("/metrics").text
    # Spelt as CONTRACT.md spells them, not imported from metrics.py: this pins the contract.
    for outcome in "stored duplicate invalid_signature malformed too_large unavailable".split():
        assert f'sentinelops_webhook_requests_total{{outcome="{outcome}"}}' in text
    assert "sentinelops_webhook_request_duration_seconds_bucket" in text


# The operations of the contract's HTTP table this service serves, as (method, path) with the
# path parameters as FastAPI names them.
CONTRACT_OPERATIONS = {
    ("post", "/api/v1/webhooks/stripe"),
    ("get", "/api/v1/health"),
    ("get", "/api/v1/anomalies"),
    ("get", "/api/v1/anomalies/{anomaly_id}"),
    ("patch", "/api/v1/anomalies/{anomaly_id}"),
    ("get", "/api/v1/events"),
    ("get", "/api/v1/events/{event_id}"),
    ("get", "/api/v1/summaries/daily/{date}"),
    ("get", "/metrics"),
}


def test_openapi_lists_every_contract_path(client):
    paths = client.get("/openapi.json").json()["paths"]
    published = {(method, path) for path, operations in paths.items() for method in operations}
    assert CONTRACT_OPERATIONS - published == set()
