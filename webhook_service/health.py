"""GET /api/v1/health and GET /metrics: open to probes and scrapers, no token."""

from __future__ import annotations

import asyncio
from datetime import datetime

import psycopg
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import PoolTimeout
from pydantic import Field

from webhook_service import loop_state
from webhook_service.deps import PoolDep, SettingsDep
from webhook_service.errors import error_response
from webhook_service.metrics import loop_metrics
from webhook_service.schemas import ErrorBody, UTCModel

router = APIRouter(tags=["health"])
HEALTH_TIMEOUT_SECONDS = 2.0

LATEST = "SELECT max(created), max(received_at) FROM stripe_events"


class Health(UTCModel):
    status: str = Field(description="`ok`, or `degraded` with `reasons` (the API still serves)")
    reasons: list[str] = Field(description="why the loop is degraded; empty when ok")
    database: str
    latest_event_at: datetime | None
    latest_received_at: datetime | None
    evaluation_lag_seconds: float | None = Field(
        description="now minus the end of the newest window evaluated with all its events;"
        " null before any event is stored"
    )
    oldest_stale_window: datetime | None = Field(
        description="start of the oldest closed window not yet evaluated with all its events"
    )
    stale_windows: int
    notifications_pending: int
    notifications_failed: int
    oldest_pending_notification_seconds: float | None
    reconciliation_watermark_age_seconds: float | None = Field(
        description="age of the point reconciliation has listed Stripe up to; null when"
        " STRIPE_API_KEY is unset or no listing has completed yet"
    )


@router.get(
    "/api/v1/health",
    response_model=Health,
    responses={503: {"model": ErrorBody, "description": "database unreachable"}},
)
async def health(pool: PoolDep, settings: SettingsDep) -> Health | Response:
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
            async with pool.connection(timeout=HEALTH_TIMEOUT_SECONDS) as conn:
                cur = await conn.execute(LATEST)
                row = await cur.fetchone()
                state = await loop_state.read(conn, settings)
    except (psycopg.OperationalError, PoolTimeout, TimeoutError):
        return error_response(
            503, "DatabaseUnavailable", "the database is unreachable", database="unreachable"
        )
    latest_event_at, latest_received_at = row if row else (None, None)
    covered = state.coverage
    return Health(
        status=state.status,
        reasons=state.reasons,
        database="reachable",
        latest_event_at=latest_event_at,
        latest_received_at=latest_received_at,
        evaluation_lag_seconds=_round(covered.lag_seconds),
        oldest_stale_window=covered.oldest_stale,
        stale_windows=len(covered.stale_windows),
        notifications_pending=state.notifications_pending,
        notifications_failed=state.notifications_failed,
        oldest_pending_notification_seconds=_round(state.oldest_pending_seconds),
        reconciliation_watermark_age_seconds=_round(state.watermark_age_seconds),
    )


def _round(seconds: float | None) -> float | None:
    return round(seconds, 1) if seconds is not None else None


@router.get(
    "/metrics",
    include_in_schema=True,
    response_class=Response,
    summary="Prometheus metrics (text format)",
)
async def metrics(request: Request, pool: PoolDep, settings: SettingsDep) -> Response:
    state = None
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
            async with pool.connection(timeout=HEALTH_TIMEOUT_SECONDS) as conn:
                state = await loop_state.read(conn, settings)
    except (psycopg.OperationalError, PoolTimeout, TimeoutError):
        pass  # the webhook counters still count; sentinelops_database_up says 0
    body = generate_latest(request.app.state.metrics.exposed) + loop_metrics(state)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
