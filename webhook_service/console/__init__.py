"""The operations console: server-rendered pages (Jinja2) served by the API process at /console.

Sign-in with an API token (signin.py), incidents (incidents.py), one incident with its chart
and actions (incident.py), the overview (overview.py), the events (events.py) and the silences
(silences.py).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from webhook_service.console import events, incident, incidents, overview, signin, silences
from webhook_service.console.access import SignInRequired
from webhook_service.console.render import STATIC, error_page
from webhook_service.console.sessions import SessionSigner


class _LazySigner:
    """The signer, built on first use: the key may be generated into SENTINELOPS_HOME."""

    def __init__(self, server_key: Callable[[], bytes]) -> None:
        self._server_key = server_key

    @cached_property
    def signer(self) -> SessionSigner:
        return SessionSigner(self._server_key())


def install_console(app: FastAPI, server_key: Callable[[], bytes]) -> None:
    app.state.session_signer = _LazySigner(server_key)
    app.state.console_error = error_page
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    for module in (signin, incidents, incident, overview, events, silences):
        app.include_router(module.router)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        return signin.redirect_to_sign_in(request, exc)
