"""Helpers the tests share: the Stripe fixtures and their signatures."""

from __future__ import annotations

import json
import time
from pathlib import Path

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


def event_with(name: str, **changes: object) -> bytes:
    """A fixture event with envelope fields changed (a new id for a distinct event, say)."""
    event = fixture_event(name)
    event.update(changes)
    return json.dumps(event).encode()
