"""One error base for the HTTP service; one handler renders every error the same way."""

from __future__ import annotations

import json
import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class SentinelOpsError(Exception):
    status_code = 500

    def __init__(
        self, message: str, status_code: int | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.headers = headers or {}

    @property
    def name(self) -> str:
        return type(self).__name__

    def body(self) -> dict:
        return {"error": self.name, "detail": self.message}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status_code, headers=self.headers)


class DatabaseUnavailable(SentinelOpsError):
    status_code = 503


class NotFound(SentinelOpsError):
    status_code = 404


class InvalidCursor(SentinelOpsError):
    status_code = 422


def error_response(
    status_code: int, name: str, detail: str, headers: dict[str, str] | None = None, **extra: object
) -> JSONResponse:
    return JSONResponse(
        {"error": name, "detail": detail, **extra}, status_code=status_code, headers=headers
    )


def _for(request: Request, response: JSONResponse) -> Response:
    """The error as the caller reads it: JSON for the API, a page inside the console."""
    render = getattr(request.app.state, "console_error", None)
    if render is None or not request.url.path.startswith("/console"):
        return response
    body = json.loads(bytes(response.body))
    page: Response = render(request, response.status_code, body["error"], body["detail"])
    page.headers.update({k: v for k, v in response.headers.items() if k == "retry-after"})
    return page


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SentinelOpsError)
    async def _domain(request: Request, exc: SentinelOpsError) -> Response:
        return _for(request, exc.response())

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        parts = []
        for error in exc.errors():
            where = ".".join(
                str(p) for p in error.get("loc", ()) if p not in ("query", "path", "body")
            )
            parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
        detail = "; ".join(parts) or "invalid request"
        return _for(request, error_response(422, "ValidationError", detail))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:
            # FastAPI's only plain 400 is a body it could not parse: a validation error here.
            return _for(request, error_response(422, "ValidationError", f"body: {exc.detail}"))
        names = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}
        return _for(
            request,
            error_response(
                exc.status_code,
                names.get(exc.status_code, "HTTPError"),
                str(exc.detail),
                headers=getattr(exc, "headers", None),
            ),
        )

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _database(request: Request, exc: Exception) -> Response:
        if isinstance(exc, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled):
            # lock_timeout / statement_timeout (main.make_pool): something else, a long
            # backfill say, holds what this request needs. Say so, and when to come back.
            log.warning("database busy: %s on %s %s", type(exc).__name__, request.method,
                        request.url.path)  # fmt: skip
            return _for(request, error_response(
                503,
                "DatabaseBusy",
                "the database did not finish this request in time (another job holds what it"
                " needs); retry later",
                headers={"Retry-After": "5"},
            ))  # fmt: skip
        log.warning("database unavailable: %s", type(exc).__name__)
        return _for(request, error_response(
            503,
            "DatabaseUnavailable",
            "the database is unavailable; retry later",
            headers={"Retry-After": "5"},
        ))  # fmt: skip

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # Every error keeps the one shape, a bug included. Starlette re-raises the exception to
        # the server after this answer, and uvicorn logs its traceback; the client sees none.
        log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return _for(
            request,
            error_response(500, "InternalError", "an unexpected error occurred; it was logged"),
        )
