"""Helpers the tests share: the Stripe fixtures and their signatures."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import stripe

FIXTURES = Path(__file__).parent / "fixtures" / "stripe"
EVENT_FIXTURES = sorted(
    p.name for p in FIXTURES.glob("*.json") if p.name not in {"manifest.json", "placeholders.json"}
)
SECRET = "whsec_test_primary_0123456789"
OLD_SECRET = "whsec_test_rotated_out_98765"
TOKEN = "test-token-abcdefghijklmnop"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_event(name: str) -> dict:
    return json.loads(fixture_bytes(name))


def sign(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(
        body.decode(), secret, timestamp=timestamp if timestamp is not None else int(time.time())
    )


def signed_headers(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> dict:
    return {"Stripe-Signature": sign(body, secret, timestamp), "Content-Type": "application/json"}


def auth(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def error_of(response: Any) -> tuple[int, str]:
    """(status, error name) of an error answer, once its body is checked to be the contract's
    one shape: exactly {"error": Name, "detail": message}, both non-empty strings."""
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert isinstance(body["error"], str) and body["error"], body
    assert isinstance(body["detail"], str) and body["detail"], body
    return response.status_code, body["error"]


def event_with(name: str, **changes: object) -> bytes:
    """A fixture event with envelope fields changed (a new id for a distinct event, say)."""
    event = fixture_event(name)
    event.update(changes)
    return json.dumps(event).encode()


def live_rules_file() -> str:
    """The packaged rules, with found-late announcing off: for tests that replay a past day as
    if it were happening now and expect each incident to be posted on its own."""
    from sentinelops_pipelines.rules.definitions import default_rules_text

    path = Path(tempfile.gettempdir()) / f"sentinelops-live-rules-{os.getpid()}.toml"
    if not path.exists():
        text = default_rules_text().replace(
            "found_late_after_minutes = 120", "found_late_after_minutes = 100000000"
        )
        path.write_text(text)
    return str(path)
