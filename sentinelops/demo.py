"""`sentinelops seed-demo` and `sentinelops demo`: see the whole loop without real traffic.

The demo's output is one progress line and the result (demo_output.py); it refuses to run
against anything but this machine's own stack unless told (demo_guard.py); it talks to the
API in demo_send.py.
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import psycopg

from sentinelops import demo_guard, local_secrets
from sentinelops.db import DatabaseNotConfigured, database_url
from sentinelops.demo_output import DemoError, Progress, Result, render
from sentinelops.demo_send import open_anomalies, send, serves_console
from sentinelops.settings import Settings
from sentinelops.windows import WINDOW, window_floor

log = logging.getLogger(__name__)

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


DAGSTER_UI = "http://127.0.0.1:3000"  # where `make run` serves it
# What marks the demo's events wherever they land, beside their `evt_demo_` ids and test mode:
# Stripe's own place for a merchant's tags, on every payment and charge.
DEMO_METADATA = {"sentinelops_demo": "true"}


def _template(name: str) -> dict:
    path = resources.files("sentinelops").joinpath("demo_events", name)
    return json.loads(path.read_text())


def demo_events(now: datetime) -> list[dict]:
    """Half an hour of test-mode payments ending at the last closed window, with a failure spike
    in its last 15 minutes: declined cards send charge.failed and payment_intent.payment_failed.
    Every event is marked as the demo's: id `evt_demo_…`, livemode false, DEMO_METADATA."""
    end = window_floor(now)
    start = end - timedelta(minutes=30)
    run = secrets.token_hex(4)
    events: list[dict] = []
    for w in range(6):
        spike = w >= 3
        attempts, failing = (20, 12) if spike else (8, 1)
        for p in range(attempts):
            at = start + timedelta(minutes=5 * w, seconds=12 * p)
            pi = f"pi_demo_{run}_{w:02d}{p:02d}"
            kinds = (
                ("charge.failed", "payment_intent.payment_failed")
                if p < failing
                else ("charge.succeeded", "payment_intent.succeeded")
            )
            for kind in kinds:
                event = _template(f"{kind}.json")
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


@dataclass(frozen=True)
class Evaluation:
    run_id: str
    recorded: bool  # in the stack's Dagster instance, so its UI shows the run
    windows: int
    opened: int
    extended: int


def evaluate(
    settings: Settings, first: datetime, last: datetime, verbose: bool = False
) -> Evaluation:
    """Run the rules over the windows [first, last] in one Dagster run, recorded in the
    stack's Dagster instance when `make run` made one (so it shows in the UI and the alert
    sensor delivers what it found). DemoError when the run fails."""
    import dagster as dg

    home = Path(settings.sentinelops_home) / "dagster"
    recorded = (home / "dagster.yaml").exists()
    fmt = "%Y-%m-%d-%H:%M"
    level = "WARNING" if verbose else "CRITICAL"
    with warnings.catch_warnings():
        if not verbose:  # Dagster warns about the beta and preview APIs the assets use
            for category in (dg.BetaWarning, dg.PreviewWarning, dg.SupersessionWarning):
                warnings.simplefilter("ignore", category)
        from sentinelops_pipelines.assets.rules import anomalies, window_metrics
        from sentinelops_pipelines.assets.sources import stripe_events
        from sentinelops_pipelines.resources import PostgresResource, RulesResource

        try:
            instance = (
                dg.DagsterInstance.from_config(str(home))
                if recorded
                else dg.DagsterInstance.ephemeral()
            )
            with instance:
                result = dg.materialize(
                    [stripe_events, window_metrics, anomalies],
                    selection=[window_metrics, anomalies],
                    instance=instance,
                    raise_on_error=False,
                    # Quiet: a failure is reported as one line below, not Dagster's traces.
                    run_config={"loggers": {"console": {"config": {"log_level": level}}}},
                    resources={
                        # Hard-coded, not configured: a configured value is stored in the
                        # run's record, and this URL carries the embedded server's password.
                        "postgres": dg.ResourceDefinition.hardcoded_resource(
                            PostgresResource(database_url=database_url(settings))
                        ),
                        "rules": RulesResource(path=settings.rules_file),
                    },
                    tags={
                        "dagster/asset_partition_range_start": first.strftime(fmt),
                        "dagster/asset_partition_range_end": last.strftime(fmt),
                        "sentinelops/reason": "demo",
                    },
                )
        # A command's boundary: whatever Dagster raised becomes one line (the traceback is
        # logged at DEBUG, for LOG_LEVEL=DEBUG with --verbose).
        except Exception as exc:
            log.debug("the rules evaluation raised", exc_info=True)
            raise DemoError(f"the rules evaluation failed: {_first_line(exc)}") from None
    if not result.success:
        failures = result.get_step_failure_events()
        error = failures[0].step_failure_data.error if failures else None
        # Dagster wraps the asset's own exception (itself perhaps wrapping more): show that one.
        while error is not None and error.cause is not None and _is_dagsters(error.cls_name):
            error = error.cause
        why = _first_line(error.message) if error else "see the run in the Dagster UI"
        raise DemoError(f"the rules evaluation failed (Dagster run {result.run_id}): {why}")
    # A range run records one materialization per window, each with the run's metadata.
    found = result.asset_materializations_for_node("anomalies")
    counts = {
        key: entry.value
        for key, entry in (found[0].metadata.items() if found else ())
        if isinstance(entry.value, int)
    }
    return Evaluation(
        run_id=result.run_id,
        recorded=recorded,
        windows=counts.get("windows_evaluated", 0),
        opened=counts.get("anomalies_opened", 0),
        extended=counts.get("anomalies_extended", 0),
    )


def _is_dagsters(name: str | None) -> bool:
    return (name or "").startswith("Dagster")


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__


@contextmanager
def _library_chatter(verbose: bool) -> Iterator[None]:
    """Without --verbose, only the libraries' warnings and errors: at INFO, httpx logs every
    request and alembic every plugin Dagster's storage loads, and the result drowns."""
    root = logging.getLogger()
    level = root.level
    if not verbose:
        root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def run_demo(
    settings: Settings, api: str, *, allow_non_local: bool = False, verbose: bool = False
) -> int:
    """`sentinelops demo`; its exit status: 0 done, 1 failed, 2 refused or not set up."""
    progress = Progress(sys.stderr)
    started = time.monotonic()
    try:
        with _library_chatter(verbose):
            result = _demo(settings, api, allow_non_local, verbose, progress)
    except DemoError as error:
        progress.clear()
        print(f"sentinelops demo: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        progress.clear()
        print("sentinelops demo: interrupted", file=sys.stderr)
        return 130
    progress.done(f"sentinelops demo: done in {time.monotonic() - started:.1f} s")
    print(render(result))
    return 0


def _demo(
    settings: Settings, api: str, allow_non_local: bool, verbose: bool, progress: Progress
) -> Result:
    secret = demo_guard.signing_secret(settings)
    if secret is None:
        raise DemoError(
            "no webhook secret to sign with: STRIPE_WEBHOOK_SECRET is unset and"
            f" {settings.sentinelops_home / 'webhook-secret'} does not exist; start the stack"
            " with `make run` first",
            2,
        )
    token, token_source = _api_token(settings)
    try:
        url = database_url(settings)
    except DatabaseNotConfigured as exc:
        raise DemoError(str(exc), 2) from None
    if not allow_non_local:
        _guard(api, url, secret)

    events = demo_events(datetime.now(UTC))
    progress.step(f"sentinelops demo: sending {len(events)} demo events to {api}")
    delivery = send(
        api,
        secret.value,
        events,
        lambda done, total: progress.update(f"sentinelops demo: sent {done} of {total} events"),
    )
    if delivery.refused:
        raise DemoError(
            f"the API refused a demo event with {delivery.refused}; {delivery.stored} of"
            f" {delivery.total} were stored before the demo stopped, and nothing was evaluated"
        )
    first = window_floor(datetime.fromtimestamp(min(e["created"] for e in events), UTC))
    last = window_floor(datetime.fromtimestamp(max(e["created"] for e in events), UTC))
    end = last + WINDOW
    progress.step(f"sentinelops demo: evaluating the rules over {first:%H:%M}-{end:%H:%M} UTC")
    evaluation = evaluate(settings, first, last, verbose)
    found = open_anomalies(api, token, first, end)
    types = [event["type"] for event in events]
    return Result(
        api=api,
        sent=delivery.total,
        stored=delivery.stored,
        duplicates=delivery.duplicates,
        payments=sum(kind.startswith("payment_intent.") for kind in types),
        declined=types.count("payment_intent.payment_failed"),
        window=(first, end),
        windows_evaluated=evaluation.windows,
        opened=evaluation.opened,
        extended=evaluation.extended,
        anomalies=found,
        token_source=token_source,
        console=serves_console(api),
        dagster_run=f"{DAGSTER_UI}/runs/{evaluation.run_id}" if evaluation.recorded else None,
    )


def _api_token(settings: Settings) -> tuple[str, str]:
    """The token the demo reads anomalies with, and how its curl lines should set $TOKEN (the
    token itself is never printed: it may be a real one)."""
    if settings.api_token_values:
        return settings.api_token_values[0], "TOKEN=…  # a token from SENTINELOPS_API_TOKEN"
    path = settings.sentinelops_home / "api-token"
    token = local_secrets.read(path)
    if token is None:
        raise DemoError(
            f"no API token to read the anomalies with: SENTINELOPS_API_TOKEN is unset and {path}"
            " does not exist; start the stack with `make run` first",
            2,
        )
    return token, f"TOKEN=$(cat {path})"


def _guard(api: str, url: str, secret: demo_guard.SigningSecret) -> None:
    """DemoError (exit 2) unless the targets are this machine's own stack; before any event."""
    reasons = demo_guard.refusals(api, url, secret)
    if not reasons:  # only a local database is asked what it holds
        try:
            if demo_guard.holds_live_events(url):
                reasons.append("the database holds live-mode Stripe events (a production copy?)")
        except psycopg.Error as exc:
            raise DemoError(f"cannot read the database: {_first_line(exc)}") from None
    if reasons:
        raise DemoError(
            f"refusing to run: {'; '.join(reasons)}. The demo stores made-up payments and opens"
            " anomalies that the stack alerts on, wherever it points; pass"
            f" {demo_guard.OVERRIDE_FLAG} if that is what you want",
            2,
        )
