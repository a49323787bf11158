"""Stripe's Events API through the official client, within Stripe's rate limits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import dagster as dg
import stripe

from sentinelops.settings import get_settings

log = dg.get_dagster_logger(__name__)


class StripeNotConfigured(RuntimeError):
    pass


class StripeUnavailable(RuntimeError):
    """Stripe refused or kept failing; the message never contains the API key."""


class _Pace:
    """At most `per_second` requests: Stripe's limit is per account, shared with its owner's
    own traffic, so reconciliation stays well below it."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1 / per_second
        self.next_at = 0.0

    def wait(self) -> None:
        delay = self.next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.next_at = time.monotonic() + self.interval


class StripeResource(dg.ConfigurableResource):
    """Stripe's API. Unset `api_key`/`api_base`: STRIPE_API_KEY and STRIPE_API_BASE, read from
    the settings at run time; an empty `api_key` means no key."""

    api_key: str | None = None
    api_base: str | None = None
    page_size: int = 100  # Stripe's largest page
    max_requests_per_second: float = 25.0
    max_retries: int = 5
    backoff_seconds: float = 1.0  # first wait after a 5xx or a 429 without Retry-After; doubles
    max_retry_after_seconds: float = 60.0  # longest single wait, whatever Retry-After asks

    def _key(self) -> str | None:
        if self.api_key is not None:
            return self.api_key or None
        secret = get_settings().stripe_api_key
        return (secret.get_secret_value() or None) if secret else None

    def configured(self) -> bool:
        return self._key() is not None

    def list_events(
        self, since: datetime, until: datetime, types: list[str] | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """Every event created in [since, until] (of `types`, if given), newest first, one page
        at a time, as the JSON Stripe sent (what a webhook would have carried)."""
        key = self._key()
        if key is None:
            raise StripeNotConfigured("STRIPE_API_KEY is not set")
        client = stripe.StripeClient(
            key,
            base_addresses={"api": self.api_base or get_settings().stripe_api_base},
            max_network_retries=0,  # retried here, honouring Retry-After, which the client ignores
        )
        pace = _Pace(self.max_requests_per_second)
        params: dict[str, Any] = {
            "created": {"gte": int(since.timestamp()), "lte": int(until.timestamp())},
            "limit": self.page_size,
            **({"types": types} if types else {}),
        }
        while True:
            page = self._page(client, params, pace, key)
            events = page["data"]
            yield events
            if not page["has_more"] or not events:
                return
            params = {**params, "starting_after": events[-1]["id"]}

    def _page(self, client: stripe.StripeClient, params: dict, pace: _Pace, key: str) -> dict:
        attempt = 0
        while True:
            pace.wait()
            try:
                listed = client.v1.events.list(params=params)  # type: ignore[arg-type]
            except stripe.StripeError as exc:
                delay = self._retry_delay(exc, attempt)
                message = _describe(exc, key)
                if delay is None:
                    # `from None`: the client's exception carries the response; keep it out of logs.
                    raise StripeUnavailable(message) from None
                log.warning("%s; retrying in %.2fs", message, delay)
                time.sleep(delay)
                attempt += 1
                continue
            assert listed.last_response is not None
            return listed.last_response.data  # type: ignore[return-value]

    def _retry_delay(self, exc: stripe.StripeError, attempt: int) -> float | None:
        """Seconds to wait before retrying, or None when retrying cannot help."""
        if attempt >= self.max_retries:
            return None
        headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
        if headers.get("stripe-should-retry") == "false":
            return None
        backoff = self.backoff_seconds * 2**attempt
        status = exc.http_status
        if status == 429:
            delay = _seconds(headers.get("retry-after"))
            return min(backoff if delay is None else delay, self.max_retry_after_seconds)
        if isinstance(exc, stripe.APIConnectionError) or status == 409 or (status or 0) >= 500:
            return min(backoff, self.max_retry_after_seconds)
        return None


def _seconds(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:  # an HTTP date: Stripe sends seconds, so fall back to backing off
        return None


def _describe(exc: stripe.StripeError, key: str) -> str:
    status = exc.http_status or "no response"
    detail = exc.user_message or type(exc).__name__
    request = f" (request {exc.request_id})" if exc.request_id else ""
    # Stripe masks keys in its messages; a proxy or a mock may not.
    return f"Stripe's Events API answered {status}: {detail}{request}".replace(key, "[redacted]")
