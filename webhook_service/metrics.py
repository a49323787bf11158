"""Prometheus metrics, one registry per app, so tests and workers never share counters."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess

WEBHOOK_OUTCOMES = (
    "stored",
    "duplicate",
    "invalid_signature",
    "malformed",
    "too_large",
    "unavailable",
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.webhook_requests = Counter(
            "sentinelops_webhook_requests_total",
            "Stripe webhook requests by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.webhook_latency = Histogram(
            "sentinelops_webhook_request_duration_seconds",
            "Time from request to response on the Stripe webhook, by outcome.",
            ["outcome"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        for outcome in WEBHOOK_OUTCOMES:  # every series visible from the first scrape
            self.webhook_requests.labels(outcome)
            self.webhook_latency.labels(outcome)
        self.exposed = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # Several uvicorn workers (`sentinelops api --workers N`): each writes its values to
            # files there, and a scrape of any worker adds up all of them.
            self.exposed = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.exposed)

    def observe_webhook(self, outcome: str, seconds: float) -> None:
        self.webhook_requests.labels(outcome).inc()
        self.webhook_latency.labels(outcome).observe(seconds)
