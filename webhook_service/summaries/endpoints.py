"""GET /api/v1/summaries/daily/{date}: the stored daily operations summary, behind the token."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Path

from webhook_service.deps import PoolDep, require_read
from webhook_service.errors import NotFound
from webhook_service.schemas import ErrorBody
from webhook_service.summaries import repository
from webhook_service.summaries.schemas import DailySummary

router = APIRouter(
    tags=["summaries"],
    dependencies=[Depends(require_read)],
    responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)


@router.get(
    "/summaries/daily/{date}",
    response_model=DailySummary,
    responses={404: {"model": ErrorBody, "description": "no summary generated for that day"}},
    summary="The daily operations summary of a UTC date",
)
async def get_daily_summary(
    pool: PoolDep,
    date: Annotated[dt.date, Path(description="UTC date, e.g. 2026-11-29")],
) -> DailySummary:
    async with pool.connection() as conn:
        row = await repository.get_daily(conn, date)
    if row is None:
        raise NotFound(f"no daily summary has been generated for {date.isoformat()}")
    return DailySummary(**row)
