"""`sentinelops demo`: signed demo traffic to the running API, then the rules over it."""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import psycopg

from sentinelops import local_secrets
from sentinelops.db import DatabaseNotConfigured, database_url
from sentinelops.settings import Settings
from sentinelops.slack import config
from sentinelops.slack.delivery import deliver
from sentinelops.windows import WINDOW, window_floor
from sentinelops_pipelines.demo import guard
from sentinelops_pipelines.demo.evaluate import evaluate
from sentinelops_pipelines.demo.output import DemoError, Progress, Result, first_line, render
from sentinelops_pipelines.demo.send import open_anomalies, send, serves_console
from sentinelops_pipelines.demo.traffic import demo_events

DAGSTER_UI = "http://127.0.0.1:3000"  # where `make run` serves it
log = logging.getLogger(__name__)


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
    secret = guard.signing_secret(settings)
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
    # Posted here, not left to alerts_after_runs_sensor: a run made in this process belongs to
    # no code location, so that sensor never sees it (the next scheduled run would, minutes on).
    slack = post_alerts(settings, url, [int(a["id"]) for a in found if "id" in a])
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
        slack=slack,
    )


def post_alerts(settings: Settings, url: str, anomaly_ids: list[int]) -> str | None:
    """Deliver the alerts the evaluation queued for these anomalies, as the alerts job would;
    what happened, in a few words (None when Slack is not configured: they stay pending)."""
    destination = config.destination(settings)
    if destination is None:
        return None
    outcomes: Counter[str] = Counter()
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            for anomaly_id in anomaly_ids:  # only the demo's: the rest is the stack's to post
                outcomes += deliver(conn, destination, log, anomaly_id=anomaly_id, recover=False)
    except Exception as exc:  # they stay queued: the stack's alerts job posts them
        return f"not posted now ({type(exc).__name__}); the stack posts them after its next run"
    done = ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in sorted(outcomes.items()))
    return done or "nothing new to post"


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


def _guard(api: str, url: str, secret: guard.SigningSecret) -> None:
    """DemoError (exit 2) unless the targets are this machine's own stack; before any event."""
    reasons = guard.refusals(api, url, secret)
    if not reasons:  # only a local database is asked what it holds
        try:
            if guard.holds_live_events(url):
                reasons.append("the database holds live-mode Stripe events (a production copy?)")
        except psycopg.Error as exc:
            raise DemoError(f"cannot read the database: {first_line(exc)}") from None
    if reasons:
        raise DemoError(
            f"refusing to run: {'; '.join(reasons)}. The demo stores made-up payments and opens"
            " anomalies that the stack alerts on, wherever it points; pass"
            f" {guard.OVERRIDE_FLAG} if that is what you want",
            2,
        )
