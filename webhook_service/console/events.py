"""The events pages: find one by id, browse by type and time (newest first, keyset pages), one
event with its payload, and the webhook attempts that were turned away. They read through the
same service as GET /api/v1/events, so the console and the API page and 404 alike."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import RedirectResponse, Response

from webhook_service.console.access import BadFilter, Viewer, viewer
from webhook_service.console.render import page, pretty_json
from webhook_service.deps import PoolDep
from webhook_service.errors import InvalidCursor
from webhook_service.events import service
from webhook_service.schemas import NO_NUL, assume_utc

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
TYPE_LIMIT = 200  # Stripe's longest event type is under 60 characters
EVENT_ID = re.compile(r"evt_[A-Za-z0-9_]{1,251}")  # Stripe's ids; the database checks `evt_`
EventId = Annotated[str, Path(max_length=255, pattern=NO_NUL)]
# Offered in the type field (a datalist, not a query): the types the rules count.
KNOWN_TYPES = (
    "charge.succeeded", "charge.failed", "charge.refunded", "charge.dispute.created",
    "payment_intent.succeeded", "payment_intent.payment_failed", "refund.created",
    "customer.subscription.created", "customer.subscription.deleted", "invoice.payment_failed",
)  # fmt: skip
BAD_PAGE = "That page link is not one this console made: start again from the first page."
TIME_HELP = "use the date picker, or ISO 8601 such as 2026-05-28T20:30:00Z (no zone means UTC)"


def parse_time(text: str, name: str) -> datetime | None:
    """A `datetime-local` value (`2026-05-28T20:30`) or ISO 8601 text, in UTC; empty is none."""
    text = text.strip()
    if not text:
        return None
    try:
        return assume_utc(datetime.fromisoformat(text)).astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 9999 and a zone west of UTC
        raise BadFilter(f"{name} is not a time: {TIME_HELP}") from None


def read_filters(query: dict[str, str]) -> dict[str, Any]:
    """The filters to query with; BadFilter says which one is wrong and how to write it."""
    type_ = query.get("type", "").strip()
    if len(type_) > TYPE_LIMIT or "\x00" in type_:
        raise BadFilter(f"an event type is at most {TYPE_LIMIT} characters, e.g. charge.failed")
    since = parse_time(query.get("since", ""), "since")
    until = parse_time(query.get("until", ""), "until")
    if since and until and since >= until:
        raise BadFilter("since must be before until")
    return {"type": type_ or None, "since": since, "until": until}


def shown_time(moment: datetime | None) -> str:
    """A time as the `datetime-local` field takes it back: UTC, without a zone."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") if moment else ""


@router.get("/console/events")
async def events(
    request: Request, pool: PoolDep, who: Annotated[Viewer, Depends(viewer)]
) -> Response:
    query = request.query_params
    wanted = query.get("id", "")
    chosen = {name: query.get(name, "") for name in ("type", "since", "until")}
    context = {"viewer": who, "chosen": chosen, "types": KNOWN_TYPES, "wanted": wanted, "rows": []}
    if wanted.strip():
        if not EVENT_ID.fullmatch(wanted.strip()):
            problem = "An event id starts with evt_ and holds only letters, digits and _."
            return page(request, "events.html", {**context, "error": problem}, 400)
        return RedirectResponse(f"/console/events/{quote(wanted.strip())}", status_code=303)
    cursor = query.get("cursor") or None
    try:
        filters = read_filters(chosen)
        rows, next_cursor = await service.page(pool, **filters, cursor=cursor, limit=PAGE_SIZE)
    except BadFilter as exc:
        return page(request, "events.html", {**context, "error": str(exc)}, 400)
    except InvalidCursor:
        return page(request, "events.html", {**context, "error": BAD_PAGE}, 400)
    chosen = {
        "type": filters["type"] or "",
        "since": shown_time(filters["since"]),
        "until": shown_time(filters["until"]),
    }
    context.update(
        chosen=chosen,
        rows=rows,
        next_cursor=next_cursor,
        paged=cursor is not None,
        filter_query={name: value for name, value in chosen.items() if value},
    )
    return page(request, "events.html", context)


# Before /console/events/{event_id}, which would otherwise take "rejections" for an id.
@router.get("/console/events/rejections")
async def rejections(
    request: Request, pool: PoolDep, who: Annotated[Viewer, Depends(viewer)]
) -> Response:
    cursor = request.query_params.get("cursor") or None
    context = {"viewer": who, "rows": [], "paged": cursor is not None}
    try:
        rows, next_cursor = await service.rejections(pool, cursor, PAGE_SIZE)
    except InvalidCursor:
        return page(request, "rejections.html", {**context, "error": BAD_PAGE}, 400)
    return page(request, "rejections.html", {**context, "rows": rows, "next_cursor": next_cursor})


@router.get("/console/events/{event_id}")
async def event_page(
    request: Request, pool: PoolDep, event_id: EventId, who: Annotated[Viewer, Depends(viewer)]
) -> Response:
    event = await service.detail(pool, event_id)  # NotFound renders the 404 page
    payload = event.pop("payload")
    context = {"viewer": who, "event": event, "payload": indented(payload)}
    return page(request, "event.html", context)


def indented(payload: Any) -> str:
    """The payload, indented; as stored if it nests too deep to indent (the webhook accepts
    whatever Stripe signed, and the indenting encoder recurses a few frames per level)."""
    try:
        return pretty_json(payload)
    except RecursionError:
        return json.dumps(payload, ensure_ascii=False)
