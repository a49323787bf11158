"""Reconciliation with Stripe's Events API: store what the webhook missed, raise the gap.

Stripe keeps 30 days of events. Each run lists them from the stored watermark minus an overlap
(Stripe's list can show an event a little after its `created` time) up to a few minutes ago
(a webhook for an event created seconds ago may still be on its way), stores the missing ones
page by page, and only after a complete listing reports them as one webhook_gap and moves the
watermark. The first run also imports history: events created before the webhook's first
delivery predate the endpoint, so they are stored but never counted as missed. Stored events
reach the rules through `coverage_sensor`: their windows are not evaluated with them yet.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
from psycopg import Connection
from pydantic import Field

from sentinelops.settings import get_settings
from sentinelops_pipelines.assets.sources import stripe_events
from sentinelops_pipelines.resources import PostgresResource, RulesResource
from sentinelops_pipelines.rules.definitions import GapRule
from sentinelops_pipelines.rules.gap import find_gap
from sentinelops_pipelines.storage import anomalies as anomaly_sql
from sentinelops_pipelines.storage import reconciliation as recon_sql
from sentinelops_pipelines.stripe_api import StripeResource

GAP_RULE = "webhook_gap"
NO_KEY = (
    "STRIPE_API_KEY is not set: reconciliation with Stripe's Events API is skipped. Set it (a"
    " restricted key that can read events is enough) to recover events the webhook missed."
)


class ReconciliationConfig(dg.Config):
    overlap_minutes: int = Field(default=10, ge=0)
    grace_minutes: int = Field(default=5, ge=0)
    lookback_days: int = Field(default=30, ge=1, le=30)  # Stripe keeps 30 days


def listing_range(
    now: datetime, watermark: datetime | None, config: ReconciliationConfig
) -> tuple[datetime, datetime]:
    """[since, until] of event times to list: from the watermark minus the overlap, never
    further back than the lookback (first run: the whole lookback)."""
    since = now - timedelta(days=config.lookback_days)
    if watermark is not None:
        since = max(since, watermark - timedelta(minutes=config.overlap_minutes))
    return since, now - timedelta(minutes=config.grace_minutes)


@dg.asset(group_name="reconciliation", deps=[stripe_events], kinds={"stripe", "postgres"})
def reconciliation(
    context: dg.AssetExecutionContext,
    config: ReconciliationConfig,
    stripe: StripeResource,
    postgres: PostgresResource,
    rules: RulesResource,
) -> dg.MaterializeResult:
    """Events Stripe's Events API holds that the webhook never stored, now stored with source
    reconciliation, and a webhook_gap anomaly for each gap found."""
    if not stripe.configured():
        context.log.warning(NO_KEY)
        return dg.MaterializeResult(metadata={"skipped": NO_KEY})
    run_at = datetime.now(UTC)
    definition = rules.load().rules.get(GAP_RULE)
    types = definition.event_types if isinstance(definition, GapRule) else []
    pages = listed = missing = history = newest = 0
    with postgres.connect() as conn:
        watermark = recon_sql.listed_until(conn)
        since, until = listing_range(run_at, watermark, config)
        history_before = recon_sql.coverage_start(conn, run_at) if watermark is None else None
        # Each page is its own transaction, committed as stored: what was stored survives a run
        # that fails later, and received_at (now()) is when it was stored, as the sensor expects.
        conn.commit()
        context.log.info("listing Stripe events created %s .. %s", since, until)
        for page in stripe.list_events(since, until, types):
            missed, older = recon_sql.store_page(conn, page, history_before)
            missing, history = missing + missed, history + older
            conn.commit()
            pages, listed = pages + 1, listed + len(page)
            newest = max([newest, *(event["created"] for event in page)])
        anomaly_id, outcome = _report_gap(conn, rules, run_at)
        newest_at = datetime.fromtimestamp(newest, UTC) if newest else None
        recon_sql.advance(conn, until, newest_at, run_at)
    context.log.info(
        "listed %d events in %d pages, stored %d the webhook missed and %d older history; gap: %s",
        listed, pages, missing, history, outcome,
    )  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "listed_from": since.isoformat(),
            "listed_until": until.isoformat(),
            "event_types": ", ".join(types) or "all",
            "pages": pages,
            "events_listed": listed,
            "missing_stored": missing,
            "history_imported": history,
            "history_before": history_before.isoformat() if history_before else "none",
            "gap": outcome,
            "gap_anomaly_id": anomaly_id,
        }
    )


def _report_gap(conn: Connection, rules: RulesResource, run_at: datetime) -> tuple[int | None, str]:
    """Every stored event not yet reported (this run's, and any a failed run left) as one
    webhook_gap finding; returns the anomaly's id and what happened to it."""
    gap = recon_sql.take_gap(conn)
    if gap is None:
        return None, "none"
    book = rules.load()
    definition = book.rules.get(GAP_RULE)
    finding = None
    if isinstance(definition, GapRule):
        finding = find_gap(GAP_RULE, definition, gap, run_at)
    if finding is None:
        return None, f"{gap.missing} missing, below the {GAP_RULE} rule's threshold or rule off"
    # Read at run time, as the rules do: an opening at or above it is queued for Slack.
    notify_from = get_settings().alert_min_severity
    gap_minutes = timedelta(minutes=book.quiet_gap_minutes)
    outcome = anomaly_sql.record(conn, finding, gap_minutes, notify_from)
    anomaly_id = anomaly_sql.anomaly_for_window(conn, GAP_RULE, "all", finding.window_start)
    if anomaly_id is not None and outcome in ("extended", "escalated"):
        recon_sql.sum_incident(conn, anomaly_id)
    return anomaly_id, f"{gap.missing} missing: anomaly {outcome}"
