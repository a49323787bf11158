"""The demo's traffic: half an hour of test-mode payments with a failure spike at its end."""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta
from importlib import resources

from sentinelops.windows import WINDOW, window_floor

# What marks the demo's events wherever they land, beside their `evt_demo_` ids and test mode:
# Stripe's own place for a merchant's tags, on every payment and charge.
DEMO_METADATA = {"sentinelops_demo": "true"}
# The event types a declined and an accepted card payment send.
DECLINED = ("charge.failed", "payment_intent.payment_failed")
ACCEPTED = ("charge.succeeded", "payment_intent.succeeded")


def _templates() -> dict[str, str]:
    """Each event type's template, read once per call (parsed afresh for every event)."""
    folder = resources.files("sentinelops_pipelines.demo").joinpath("events")
    return {kind: folder.joinpath(f"{kind}.json").read_text() for kind in DECLINED + ACCEPTED}


def demo_events(now: datetime) -> list[dict]:
    """Half an hour of test-mode payments ending at the last closed window, with a failure spike
    in its last 15 minutes: declined cards send charge.failed and payment_intent.payment_failed.
    Every event is marked as the demo's: id `evt_demo_…`, livemode false, DEMO_METADATA."""
    end = window_floor(now)
    start = end - timedelta(minutes=30)
    run = secrets.token_hex(4)
    templates = _templates()
    events: list[dict] = []
    for w in range(6):
        spike = w >= 3
        attempts, failing = (20, 12) if spike else (8, 1)
        for p in range(attempts):
            at = start + w * WINDOW + timedelta(seconds=12 * p)
            pi = f"pi_demo_{run}_{w:02d}{p:02d}"
            for kind in DECLINED if p < failing else ACCEPTED:
                event = json.loads(templates[kind])
                event["id"] = f"evt_demo_{run}_{len(events):06d}"
                event["created"] = int(at.timestamp())
                event["livemode"] = False
                event["request"] = {"id": None, "idempotency_key": None}
                obj = event["data"]["object"]
                obj["id"] = pi if kind.startswith("payment_intent") else f"ch_demo_{run}_{w}{p}"
                if kind.startswith("charge"):
                    obj["payment_intent"] = pi
                obj["livemode"] = False
                obj["description"] = "SentinelOps demo payment"
                obj["metadata"] = {**DEMO_METADATA, "sentinelops_demo_run": run}
                events.append(event)
    return events
