"""GET /api/v1/health and GET /metrics: open to probes and scrapers, no token."""

from __future__ import annotations

import asyncio
from datetime import datetime

import psycopg
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import PoolTimeout

from webhook_service.deps import PoolDep
from webhook_service.errors import error_response
from webhook_service.schemas import ErrorBody, UTCModel

router = APIRouter(tags=["health"])
HEALTH_TIMEOUT_SECONDS = 2.0

LATEST = "SELECT max(created), max(received_at) FROM stripe_events"


class Health(UTCModel):
    status: str
    database: str
    latest_event_at: datetime | None
    latest_received_at: datetime | None


@router.get(
    "/api/v1/health",
    response_model=Health,
    responses={503: {"model": ErrorBody, "description": "database unreachable"}},
)
async def health(pool: PoolDep) -> Health | Response:
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
            async with pool.connection(timeout=HEALTH_TIMEOUT_SECONDS) as conn:
                cur = await conn.execute(LATEST)
                row = await cur.fetchone()
    except (psycopg.OperationalError, PoolTimeout, TimeoutError):
        return error_response(
            503, "DatabaseUnavailable", "the database is unreachable", database="unreachable"
        )
    latest_event_at, latest_received_at = row if row else (None, None)
    return Health(
        status="ok",
        database="reachable",
        latest_event_at=latest_event_at,
        latest_received_at=latest_received_at,
    )


@router.get(
    "/metrics",
    include_in_schema=True,
    response_class=Response,
    summary="Prometheus metrics (text format)",
)
async def metrics(request: Request) -> Response:
    return Response(
        generate_latest(request.app.state.metrics.exposed), media_type=CONTENT_TYPE_LATEST
    )
