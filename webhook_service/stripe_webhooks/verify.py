"""Verify a Stripe webhook on its raw bytes and say precisely why one is rejected."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

import stripe

from webhook_service.errors import SentinelOpsError

# Reason code -> the outcome label it counts under in /metrics.
REASON_OUTCOMES = {
    "missing_header": "invalid_signature",
    "malformed_header": "invalid_signature",
    "timestamp_out_of_tolerance": "invalid_signature",
    "signature_mismatch": "invalid_signature",
    "malformed_json": "malformed",
    "too_large": "too_large",
}
# PostgreSQL's to_timestamp() and Python's datetime (which reads `created` back) end at year 9999;
# past it the INSERT fails (a 500). Stripe's times are all after 1970.
MAX_CREATED = 253_402_300_799  # 9999-12-31T23:59:59Z


class WebhookRejected(SentinelOpsError):
    status_code = 400

    def __init__(self, reason: str, message: str, status_code: int = 400) -> None:
        super().__init__(message, status_code)
        self.reason = reason

    @property
    def name(self) -> str:
        return {"malformed_json": "MalformedPayload", "too_large": "PayloadTooLarge"}.get(
            self.reason, "InvalidSignature"
        )

    @property
    def outcome(self) -> str:
        return REASON_OUTCOMES[self.reason]

    def body(self) -> dict:
        return {**super().body(), "reason": self.reason}


class WebhookNotConfigured(SentinelOpsError):
    status_code = 503


@dataclass(frozen=True)
class VerifiedEvent:
    """A body whose signature and envelope (object, id, type, created, livemode) were checked.
    The stored columns are read from the body by the INSERT itself (repository.STORE_EVENTS)."""

    id: str
    payload: str  # the verified body, stored as-is (PostgreSQL parses it into JSONB)


def _parse_header(header: str) -> tuple[int, list[str]]:
    if not header.isascii():
        # Stripe's header is ASCII; a non-ASCII v1 makes stripe's hmac.compare_digest raise
        # TypeError (a 500) instead of failing the comparison.
        raise WebhookRejected("malformed_header", "Stripe-Signature must be ASCII")
    timestamp: int | None = None
    signatures = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            if timestamp is not None:
                # We would read the last t=, Stripe's library the first: the two checks would
                # judge different timestamps. Stripe sends one.
                raise WebhookRejected("malformed_header", "Stripe-Signature carries t= twice")
            try:
                timestamp = int(value)
            except ValueError:
                raise WebhookRejected(
                    "malformed_header", "Stripe-Signature t= must be a whole number"
                ) from None
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookRejected(
            "malformed_header", "Stripe-Signature must carry t=<timestamp> and v1=<signature>"
        )
    return timestamp, signatures


def verify(body: bytes, header: str | None, secrets: list[str], tolerance: int) -> VerifiedEvent:
    """The verified event, or WebhookRejected with the reason code."""
    if not header:
        raise WebhookRejected("missing_header", "the Stripe-Signature header is missing")
    timestamp, _ = _parse_header(header)
    now = time.time()
    # Compared, not subtracted: int - float overflows for a t= beyond 1e308 (a 500).
    if not now - tolerance <= timestamp <= now + tolerance:
        raise WebhookRejected(
            "timestamp_out_of_tolerance",
            f"the signature timestamp is more than {tolerance} s from now (replay or clock skew)",
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        # Stripe signs UTF-8 text; bytes that are not UTF-8 cannot carry its signature.
        raise WebhookRejected("signature_mismatch", "no signature matches the payload") from None
    for secret in secrets:  # several during a secret rotation
        try:
            # Stripe's own check (HMAC-SHA256 over "t.payload", constant-time compare, tolerance).
            # Not construct_event: it also builds a StripeObject tree we would throw away, which
            # measured 2.7 ms of the ~5 ms CPU a request cost (benchmarks/ingest.py).
            stripe.WebhookSignature.verify_header(text, header, secret, tolerance)
        except stripe.SignatureVerificationError:
            continue
        return _to_verified(_parse(text), text)
    raise WebhookRejected("signature_mismatch", "no signature matches the payload for any secret")


# The body is stored as jsonb, and PostgreSQL refuses some JSON that Python's json module reads.
# A signed body it would refuse must be a 400 here, not a failed INSERT: that is a 500, which
# Stripe retries for days. Each check below was such a 500 (tests/webhook_service/
# test_webhook_fuzz.py).
def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity, -Infinity: jsonb refuses them


def _finite_float(literal: str) -> float:
    value = float(literal)
    # Past a double's range a literal reads as inf (1e999) or 0.0 (1e-999), and jsonb's numeric
    # fails a little further out (past 1e131071, below 1e-16383). Stripe sends nothing of the
    # kind, so refuse the whole range rather than mirror PostgreSQL's limits.
    if math.isinf(value) or (value == 0 and literal.lower().partition("e")[0].strip("-0.")):
        raise ValueError(f"{literal} does not fit a double")
    return value


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def _parse(text: str) -> object:
    try:
        event = _DECODER.decode(text)
        # A \ud800-\udfff escape that is not half of a pair reads as a lone surrogate, which
        # jsonb refuses and UTF-8 cannot encode. (The "\\" test first: it is a memchr, while
        # the other two cost microseconds, and most bodies have no backslash at all.)
        if "\\" in text and ("\\ud" in text or "\\uD" in text):
            json.dumps(event, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python recurses
        raise WebhookRejected("malformed_json", "the signed body is not valid JSON") from None
    return event


def _field(event: object, key: str) -> object:
    return event.get(key) if isinstance(event, dict) else None


def _to_verified(event: object, text: str) -> VerifiedEvent:
    event_id, event_type = _field(event, "id"), _field(event, "type")
    created, livemode = _field(event, "created"), _field(event, "livemode")
    if (
        _field(event, "object") != "event"
        or not isinstance(event_id, str)
        or not event_id.startswith("evt_")
        or not isinstance(event_type, str)
        or not event_type
        or not isinstance(created, int)
        or isinstance(created, bool)
        or not 0 <= created <= MAX_CREATED
        or not isinstance(livemode, bool)
        or "\\u0000" in text  # JSONB cannot hold NUL; Stripe never sends it
    ):
        raise WebhookRejected(
            "malformed_json",
            "the signed body is not a Stripe event (needs object=event, id evt_…, type, created,"
            " livemode)",
        )
    return VerifiedEvent(id=event_id, payload=text)
