"""`sentinelops demo` talking to the API: signed webhook deliveries in, anomalies back out.
Every request says it is the demo's (User-Agent `sentinelops-demo/<version>`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata

import httpx
import stripe

from sentinelops_pipelines.demo.output import DemoError, describe_answer, json_body

WEBHOOK_PATH = "/api/v1/webhooks/stripe"
CONCURRENCY = 8


def _user_agent() -> str:
    try:
        version = metadata.version("sentinelops")
    except metadata.PackageNotFoundError:
        version = "dev"
    return f"sentinelops-demo/{version}"


USER_AGENT = _user_agent()


@dataclass
class Delivery:
    total: int
    stored: int = 0
    duplicates: int = 0  # already stored: the API answered 2xx and kept nothing new
    refused: str | None = None  # the first non-2xx answer, described

    @property
    def answered(self) -> int:
        return self.stored + self.duplicates


def send(
    api: str,
    secret: str,
    events: list[dict],
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> Delivery:
    """POST each event signed as Stripe signs it, a few at a time; the first non-2xx answer
    stops the rest (168 identical refusals say nothing more). DemoError if unreachable."""
    delivery = Delivery(len(events))
    stop = threading.Event()

    def post(event: dict) -> httpx.Response | None:
        if stop.is_set():
            return None
        body = json.dumps(event)
        header = stripe.WebhookSignature.generate_signature_header(body, secret)
        try:
            response = http.post(
                WEBHOOK_PATH,
                content=body,
                headers={"Stripe-Signature": header, "Content-Type": "application/json"},
            )
        except httpx.HTTPError:
            stop.set()
            raise
        if not response.is_success:
            stop.set()
        return response

    with httpx.Client(base_url=api, timeout=10, headers={"User-Agent": USER_AGENT}) as http:
        try:
            with ThreadPoolExecutor(CONCURRENCY) as pool:
                for response in pool.map(post, events):
                    if response is None:
                        continue
                    if not response.is_success:
                        delivery.refused = delivery.refused or describe_answer(response)
                    elif json_body(response).get("duplicate") is True:
                        delivery.duplicates += 1
                    else:
                        delivery.stored += 1
                    on_progress(delivery.answered, delivery.total)
        except httpx.HTTPError as exc:
            raise DemoError(
                f"cannot reach the API at {api} ({exc or type(exc).__name__}): is `make run`"
                " running? (`--api URL` points the demo elsewhere)"
            ) from None
        finally:
            stop.set()  # Ctrl-C: the workers still queued send nothing more
    return delivery


def open_anomalies(api: str, token: str, first: datetime, end: datetime) -> list[dict]:
    """The open anomalies, as the API lists them, whose windows overlap [first, end)."""
    query: dict[str, str | int] = {"only_open": "true", "sort": "severity_desc", "limit": 100}
    headers = {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT}
    try:
        response = httpx.get(f"{api}/api/v1/anomalies", params=query, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise DemoError(f"cannot reach the API at {api} to list the anomalies ({exc})") from None
    if not response.is_success:
        raise DemoError(
            f"the events were stored and evaluated, but listing the anomalies failed with"
            f" {describe_answer(response)}"
        )
    items = json_body(response).get("items")
    return [item for item in items or [] if _overlaps(item, first, end)]


def serves_console(api: str) -> bool:
    try:
        response = httpx.get(f"{api}/console", headers={"User-Agent": USER_AGENT}, timeout=5)
    except httpx.HTTPError:
        return False
    return response.is_success or response.is_redirect


def _overlaps(item: object, first: datetime, end: datetime) -> bool:
    try:
        start = datetime.fromisoformat(item["window_start"])  # type: ignore[index]
        stop = datetime.fromisoformat(item["window_end"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return False
    return start < end and stop > first
