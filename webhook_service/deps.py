"""Request dependencies: the pool, the settings, and who is calling (webhook_service/auth.py).

All `async def`: FastAPI runs a plain `def` dependency in its thread pool, a hop per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from psycopg_pool import AsyncConnectionPool

from sentinelops.settings import Settings
from webhook_service.auth import Authenticator, Caller


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_pool(request: Request) -> AsyncConnectionPool:
    return request.app.state.pool  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[AsyncConnectionPool, Depends(get_pool)]


def _authenticator(request: Request) -> Authenticator:
    return request.app.state.authenticator  # type: ignore[no-any-return]


async def require_read(request: Request) -> Caller | None:
    """The caller, or None for an anonymous read when SENTINELOPS_PUBLIC_READS is on."""
    authenticator = _authenticator(request)
    if authenticator.public_reads:  # an explicit opt-in; PATCH and the like never take this path
        return None
    return authenticator.authenticate(request.headers.get("authorization"))


async def require_write(request: Request) -> Caller:
    # Writes were authenticated by RequestGuard before their body was read.
    caller = getattr(request.state, "caller", None)
    if caller is None:
        caller = _authenticator(request).authenticate(request.headers.get("authorization"))
    return caller  # type: ignore[no-any-return]


WriterDep = Annotated[Caller, Depends(require_write)]
