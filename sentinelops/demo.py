"""`sentinelops seed-demo` and `sentinelops demo`: see the whole loop without real traffic."""

from __future__ import annotations

import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import httpx
import psycopg
import stripe

from sentinelops.db import database_url
from sentinelops.settings import Settings
from sentinelops.windows import window_floor

DEMO_START = datetime(2026, 1, 1, tzinfo=UTC)
# (rule, severity, title, minutes after DEMO_START): one of each severity, fixed so re-seeding
# finds them again instead of adding more.
DEMO_ANOMALIES = [
    (
        "payment_failure_spike",
        "high",
        "[demo] Payment failure rate 58% over 30 min (70 of 120 payments; usual 4%)",
        0,
    ),
    ("refund_spike", "medium", "[demo] 14 refunds in 30 min (usually 1.2)", 60),
    ("webhook_integrity", "low", "[demo] 7 webhook attempts failed verification in 5 min", 120),
]


def seed_demo(url: str) -> list[int]:
    """Create the demo anomalies if missing; their ids. Idempotent: keyed like real ones."""
    from sentinelops_pipelines.rules.model import Finding
    from sentinelops_pipelines.storage import anomalies

    ids = []
    with psycopg.connect(url) as conn:
        for rule, severity, title, minutes in DEMO_ANOMALIES:
            start = DEMO_START + timedelta(minutes=minutes)
            finding = Finding(
                rule=rule,
                scope="demo",
                severity=severity,  # type: ignore[arg-type]
                title=title,  # type: ignore[arg-type]
                window_start=start,
                evidence={
                    "_demo": True,
                    "note": "created by `sentinelops seed-demo`",
                    "sample_event_ids": [],
                },
            )
            anomalies.record(conn, finding, timedelta(0))
            row = conn.execute(
                "SELECT anomaly_id FROM anomaly_windows"
                " WHERE rule = %s AND scope = 'demo' AND window_start = %s",
                (rule, start),
            ).fetchone()
            ids.append(row[0])  # type: ignore[index]
    return ids


def _template(name: str) -> dict:
    path = resources.files("sentinelops").joinpath("demo_events", name)
    return json.loads(path.read_text())


def demo_events(now: datetime) -> list[dict]:
    """Half an hour of payments ending at the last closed window, with a failure spike in its
    last 15 minutes: declined cards send charge.failed and payment_intent.payment_failed."""
    end = window_floor(now)
    start = end - timedelta(minutes=30)
    run = secrets.token_hex(4)
    events: list[dict] = []
    for w in range(6):
        spike = w >= 3
        attempts, failing = (20, 12) if spike else (8, 1)
        for p in range(attempts):
            at = start + timedelta(minutes=5 * w, seconds=12 * p)
            pi = f"pi_demo{run}{w:02d}{p:02d}"
            kinds = (
                ("charge.failed", "payment_intent.payment_failed")
                if p < failing
                else ("charge.succeeded", "payment_intent.succeeded")
            )
            for kind in kinds:
                event = _template(f"{kind}.json")
                event["id"] = f"evt_demo{run}{len(events):06d}"
                event["created"] = int(at.timestamp())
                obj = event["data"]["object"]
                obj["id"] = pi if kind.startswith("payment_intent") else f"ch_demo{run}{w}{p}"
                if kind.startswith("charge"):
                    obj["payment_intent"] = pi
                events.append(event)
    return events


def _read_local(settings: Settings, name: str, values: list[str]) -> str:
    if values:
        return values[0]
    path = Path(settings.sentinelops_home) / name
    if not path.exists():
        raise SystemExit(f"no {name}: start the stack with `make run` first, or set it")
    return path.read_text().strip()


def send(api: str, secret: str, events: list[dict]) -> dict[int, int]:
    """POST each event, correctly signed, as Stripe would; counts of status codes."""
    codes: dict[int, int] = {}
    with httpx.Client(base_url=api, timeout=10) as http:

        def post(event: dict) -> int:
            body = json.dumps(event)
            header = stripe.WebhookSignature.generate_signature_header(body, secret)
            response = http.post(
                "/api/v1/webhooks/stripe",
                content=body,
                headers={"Stripe-Signature": header, "Content-Type": "application/json"},
            )
            return response.status_code

        with ThreadPoolExecutor(8) as pool:
            for code in pool.map(post, events):
                codes[code] = codes.get(code, 0) + 1
    return codes


def evaluate(settings: Settings, first: datetime, last: datetime) -> bool:
    """Run the rules over the windows [first, last] in one Dagster run, recorded in the
    stack's Dagster instance when `make run` made one (so it shows in the UI and the alert
    sensor delivers what it found)."""
    import dagster as dg

    from sentinelops_pipelines.assets.rules import anomalies, window_metrics
    from sentinelops_pipelines.assets.sources import stripe_events
    from sentinelops_pipelines.resources import PostgresResource, RulesResource

    home = Path(settings.sentinelops_home) / "dagster"
    instance = (
        dg.DagsterInstance.from_config(str(home))
        if (home / "dagster.yaml").exists()
        else dg.DagsterInstance.ephemeral()
    )
    fmt = "%Y-%m-%d-%H:%M"
    with instance:
        result = dg.materialize(
            [stripe_events, window_metrics, anomalies],
            selection=[window_metrics, anomalies],
            instance=instance,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            resources={
                "postgres": PostgresResource(database_url=database_url(settings)),
                "rules": RulesResource(),
            },
            tags={
                "dagster/asset_partition_range_start": first.strftime(fmt),
                "dagster/asset_partition_range_end": last.strftime(fmt),
                "sentinelops/reason": "demo",
            },
        )
    return result.success


def run_demo(settings: Settings, api: str) -> int:
    secret = _read_local(settings, "webhook-secret", settings.webhook_secret_values)
    token = _read_local(settings, "api-token", settings.api_token_values)
    now = datetime.now(UTC)
    events = demo_events(now)
    started = time.monotonic()
    codes = send(api, secret, events)
    print(f"sent {len(events)} signed Stripe events in {time.monotonic() - started:.1f} s: {codes}")
    first = datetime.fromtimestamp(min(e["created"] for e in events), UTC)
    last = datetime.fromtimestamp(max(e["created"] for e in events), UTC)
    first, last = window_floor(first), window_floor(last)
    evaluate(settings, first, last)
    headers = {"Authorization": f"Bearer {token}"}
    query: dict[str, str | int] = {"only_open": "true", "sort": "detected_desc", "limit": 5}
    page = httpx.get(f"{api}/api/v1/anomalies", params=query, headers=headers, timeout=10).json()
    print("\nopen anomalies:")
    for item in page["items"]:
        print(f"  #{item['id']} [{item['severity']}] {item['rule']}: {item['title']}")
    if page["items"]:
        one = page["items"][0]["id"]
        auth = f"-H 'Authorization: Bearer {token}'"
        print("\nwork one through its lifecycle:")
        print(f"  curl {auth} {api}/api/v1/anomalies/{one}")
        for status in ("acknowledged", "resolved"):
            print(
                f"  curl -X PATCH {auth} -H 'Content-Type: application/json' "
                f'-d \'{{"status": "{status}"}}\' {api}/api/v1/anomalies/{one}'
            )
    return 0
