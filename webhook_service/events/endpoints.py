"""GET /api/v1/events and /api/v1/events/{event_id}: what was received, behind the token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse

from webhook_service.deps import PoolDep, require_read
from webhook_service.events import service
from webhook_service.events.schemas import EventDetail, EventPage, EventSummary
from webhook_service.schemas import NO_NUL, ErrorBody, UTCDateTime

router = APIRouter(
    tags=["events"],
    dependencies=[Depends(require_read)],
    responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)


@router.get("/events", response_model=EventPage, summary="List stored Stripe events, newest first")
async def list_events(
    pool: PoolDep,
    type: Annotated[
        str | None, Query(description="Stripe event type, e.g. charge.failed", pattern=NO_NUL)
    ] = None,
    since: Annotated[
        UTCDateTime | None,
        Query(description="created at or after (ISO 8601; a time without a zone is UTC)"),
    ] = None,
    until: Annotated[
        UTCDateTime | None,
        Query(description="created before (ISO 8601; a time without a zone is UTC)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None,
        Query(description="next_cursor of the previous page", max_length=512, pattern=NO_NUL),
    ] = None,
) -> EventPage:
    rows, next_cursor = await service.page(
        pool, type=type, since=since, until=until, cursor=cursor, limit=limit
    )
    return EventPage(items=[EventSummary(**row) for row in rows], next_cursor=next_cursor)


@router.get(
    "/events/{event_id}",
    response_model=EventDetail,
    responses={404: {"model": ErrorBody}},
    summary="One stored event by its Stripe id",
)
async def get_event(
    pool: PoolDep, event_id: Annotated[str, Path(max_length=255, pattern=NO_NUL)]
) -> JSONResponse:
    row = await service.detail(pool, event_id)
    # The payload is returned as stored, not through pydantic: Stripe's JSON may nest deeper
    # than pydantic serializes (a 500 for a signed event ~300 levels deep, which the webhook
    # accepts), and it needs no validation on the way out.
    payload = row.pop("payload")
    return JSONResponse({**EventSummary(**row).model_dump(mode="json"), "payload": payload})
