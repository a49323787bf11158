"""Rendering console pages: one Jinja2 environment, autoescaped, with the headers every page
with data carries (a Content-Security-Policy without inline script, no framing, no caching)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent
STATIC = HERE / "static"

# Scripts and styles only from our own origin: event payloads and titles can carry markup, and
# even if one slipped past escaping, no inline script would run.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self';"
        " object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

templates = Jinja2Templates(directory=HERE / "templates")


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """`3 min ago`, `5 h ago`, `2 d ago`: how long ago, at a glance."""
    if moment is None:
        return ""
    seconds = max(0, int(((now or datetime.now(UTC)) - moment).total_seconds()))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def utc(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M UTC") -> str:
    return moment.astimezone(UTC).strftime(fmt) if moment else ""


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


templates.env.filters.update(ago=ago, utc=utc, pretty_json=pretty_json)


def page(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """A console page, with the security headers."""
    context = {"settings": request.app.state.settings, **context}
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


def error_page(request: Request, status_code: int, title: str, detail: str) -> HTMLResponse:
    """An error as a page of the console (a 404, a refused filter, the database down)."""
    viewer = getattr(request.state, "viewer", None)
    return page(
        request,
        "error.html",
        {"title": title, "detail": detail, "status": status_code, "viewer": viewer},
        status_code=status_code,
    )
