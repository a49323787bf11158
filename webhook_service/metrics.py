"""Prometheus metrics, one registry per app, so tests and workers never share counters."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

if TYPE_CHECKING:
    from webhook_service.loop_state import LoopState

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


def loop_metrics(state: LoopState | None) -> bytes:
    """The loop's state as gauges, read fresh at each scrape (`None`: the database is down).
    A registry per scrape: these are facts of the database, the same from every worker."""
    registry = CollectorRegistry()

    def gauge(name: str, text: str, value: float | None, **labels: str) -> None:
        if value is None:
            return  # absent, rather than a made-up number
        metric = Gauge(name, text, list(labels), registry=registry)
        (metric.labels(**labels) if labels else metric).set(value)

    gauge("sentinelops_database_up", "1 when the database answered this scrape.",
          0 if state is None else 1)  # fmt: skip
    if state is not None:
        covered = state.coverage
        oldest = covered.oldest_stale
        gauge("sentinelops_loop_degraded", "1 while /api/v1/health says degraded.",
              1 if state.reasons else 0)  # fmt: skip
        gauge("sentinelops_evaluation_lag_seconds",
              "Now minus the end of the newest window evaluated with all its events.",
              covered.lag_seconds)  # fmt: skip
        gauge("sentinelops_stale_windows",
              "Closed 5-minute windows not yet evaluated with all their events.",
              len(covered.stale_windows))  # fmt: skip
        gauge("sentinelops_oldest_stale_window_timestamp_seconds",
              "Start of the oldest stale window (Unix time).",
              oldest.timestamp() if oldest else None)  # fmt: skip
        notifications = Gauge("sentinelops_notifications", "Notifications by status.",
                              ["status"], registry=registry)  # fmt: skip
        notifications.labels("pending").set(state.notifications_pending)
        notifications.labels("failed").set(state.notifications_failed)
        gauge("sentinelops_oldest_pending_notification_seconds",
              "Age of the oldest notification Slack has not accepted yet.",
              state.oldest_pending_seconds)  # fmt: skip
        gauge("sentinelops_reconciliation_watermark_age_seconds",
              "Age of the point reconciliation has listed Stripe's events up to.",
              state.watermark_age_seconds)  # fmt: skip
    return generate_latest(registry)
