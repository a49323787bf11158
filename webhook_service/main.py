"""create_app(): the HTTP service. The lifespan owns the one connection pool of the process."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from sentinelops import local_secrets
from sentinelops.db import database_url
from sentinelops.settings import Settings, get_settings
from webhook_service.anomalies.endpoints import router as anomalies_router
from webhook_service.auth import Authenticator
from webhook_service.console import install_console
from webhook_service.errors import install_error_handlers
from webhook_service.events.endpoints import router as events_router
from webhook_service.guard import RequestGuard
from webhook_service.health import router as health_router
from webhook_service.metrics import Metrics
from webhook_service.silences.endpoints import router as silences_router
from webhook_service.slack import socket_mode
from webhook_service.slack.interactions import router as slack_router
from webhook_service.stripe_webhooks.endpoints import router as webhook_router
from webhook_service.stripe_webhooks.writer import EventWriter
from webhook_service.summaries.endpoints import router as summaries_router

log = logging.getLogger(__name__)


def make_pool(settings: Settings) -> AsyncConnectionPool:
    # Autocommit: each write is one atomic statement, so BEGIN/COMMIT round trips would only add
    # latency; multi-statement changes open `conn.transaction()` explicitly. A dead server must
    # surface as a fast 503, not a hung request.
    kwargs: dict[str, Any] = {
        "application_name": "sentinelops-api",
        "connect_timeout": 3,
        "autocommit": True,
    }
    if not settings.db_prepare:  # PgBouncer in transaction mode: never prepare a statement
        kwargs["prepare_threshold"] = None
    timeouts = {
        "lock_timeout": f"{int(settings.db_lock_timeout_seconds * 1000)}ms",
        "statement_timeout": f"{int(settings.db_statement_timeout_seconds * 1000)}ms",
    }

    async def configure(conn: AsyncConnection) -> None:
        # Set on each new connection, not as a startup `options` parameter: PgBouncer refuses
        # unknown startup parameters. A statement past either limit fails (errors.py: 503).
        await conn.execute(
            "SELECT set_config('lock_timeout', %(lock_timeout)s, false),"
            " set_config('statement_timeout', %(statement_timeout)s, false)",
            timeouts,
        )

    return AsyncConnectionPool(
        database_url(settings),
        min_size=min(2, settings.db_pool_max_size),
        max_size=settings.db_pool_max_size,
        timeout=settings.db_timeout_seconds,
        kwargs=kwargs,
        configure=configure,
        open=False,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = make_pool(settings)
        # Don't wait: an API started while the database is down still answers (503) and
        # recovers by itself once the database is back.
        await pool.open(wait=False)
        app.state.pool = pool
        # Webhook writes share statements under load (group commit); at most half the pool's
        # connections write at once, so reads and rejections still find one.
        app.state.writer = EventWriter(pool, max_inflight=settings.db_pool_max_size // 2)
        if not settings.webhook_secret_values:
            log.warning("STRIPE_WEBHOOK_SECRET is unset: the webhook answers 503 until it is set")
        if not settings.api_token_values and not settings.public_reads:
            log.warning("SENTINELOPS_API_TOKEN is unset: /api/v1 reads answer 503 until it is set")
        # Everything imported and built so far lives as long as the process: move it out of the
        # collector's reach. Otherwise each full collection walked it all and stopped the
        # event loop for ~50 ms, several times a second under load (benchmarks/ingest.py p99).
        gc.freeze()
        # Button presses over Socket Mode when SLACK_APP_TOKEN is set; it connects in the
        # background, so Slack being unreachable never holds the API back.
        socket = await socket_mode.start(settings, pool)
        try:
            yield
        finally:
            if socket is not None:
                await socket.close()
            await pool.close()

    app = FastAPI(
        title="SentinelOps",
        version="0.1.0",
        description="Stripe webhook ingestion and revenue-operations anomalies.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    authenticator = Authenticator(settings, lambda: local_secrets.session_key(settings))
    app.state.authenticator = authenticator
    install_error_handlers(app)
    app.add_middleware(RequestGuard, authenticator=authenticator, max_bytes=settings.api_max_bytes)
    app.include_router(webhook_router, prefix="/api/v1")
    app.include_router(events_router, prefix="/api/v1")
    app.include_router(anomalies_router, prefix="/api/v1")
    app.include_router(silences_router, prefix="/api/v1")
    app.include_router(summaries_router, prefix="/api/v1")
    app.include_router(slack_router, prefix="/api/v1")
    app.include_router(health_router)
    install_console(app, lambda: local_secrets.session_key(settings))
    return app
