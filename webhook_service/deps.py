"""Request dependencies: the pool, the settings, and bearer-token authentication.

All `async def`: FastAPI runs a plain `def` dependency in its thread pool, a hop per request.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from psycopg_pool import AsyncConnectionPool

from sentinelops.settings import Settings
from webhook_service.errors import SentinelOpsError


class Unauthorized(SentinelOpsError):
    status_code = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="sentinelops"'})


class ApiTokenNotConfigured(SentinelOpsError):
    status_code = 503


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_pool(request: Request) -> AsyncConnectionPool:
    return request.app.state.pool  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[AsyncConnectionPool, Depends(get_pool)]


def _check_token(request: Request, settings: Settings) -> None:
    tokens = settings.api_token_values
    if not tokens:
        # Event payloads carry customer data: no token configured never means open.
        raise ApiTokenNotConfigured(
            "SENTINELOPS_API_TOKEN is not set; this endpoint stays closed until it is"
        )
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise Unauthorized("a bearer token is required")
    # Compare against every token, in constant time, so timing reveals neither token nor index.
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(presented.encode(), token.encode())
    if not matched:
        raise Unauthorized("the bearer token is not valid")


async def require_read(request: Request, settings: SettingsDep) -> None:
    if settings.public_reads:  # an explicit opt-in; PATCH and the like never take this path
        return
    _check_token(request, settings)


async def require_write(request: Request, settings: SettingsDep) -> None:
    _check_token(request, settings)
