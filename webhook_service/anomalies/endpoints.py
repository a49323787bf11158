"""The anomaly API: list, one with its history, and status transitions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Query

from webhook_service.anomalies import service
from webhook_service.anomalies.lifecycle import Status
from webhook_service.anomalies.schemas import (
    Anomaly,
    AnomalyDetail,
    AnomalyPage,
    Severity,
    Sort,
    StatusChange,
)
from webhook_service.deps import PoolDep, SettingsDep, WriterDep, require_read
from webhook_service.schemas import NO_NUL, ErrorBody
from webhook_service.slack.nudge import nudge

router = APIRouter(
    tags=["anomalies"],
    responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
AnomalyId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get(
    "/anomalies",
    response_model=AnomalyPage,
    dependencies=[Depends(require_read)],
    summary="List anomalies",
)
async def list_anomalies(
    pool: PoolDep,
    only_open: Annotated[bool, Query(description="only unresolved (open or acknowledged)")] = False,
    status: Status | None = None,
    severity: Severity | None = None,
    rule: Annotated[str | None, Query(max_length=100, pattern=NO_NUL)] = None,
    demo_only: Annotated[bool, Query(description="only `sentinelops seed-demo` anomalies")] = False,
    sort: Sort = "severity_desc",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None,
        Query(description="next_cursor of the previous page", max_length=512, pattern=NO_NUL),
    ] = None,
) -> AnomalyPage:
    filters = {
        "only_open": only_open,
        "status": status,
        "severity": severity,
        "rule": rule,
        "demo_only": demo_only,
    }
    page, next_cursor = await service.page(pool, filters, sort, cursor, limit)
    return AnomalyPage(items=[Anomaly(**row) for row in page], next_cursor=next_cursor)


@router.get(
    "/anomalies/{anomaly_id}",
    response_model=AnomalyDetail,
    dependencies=[Depends(require_read)],
    responses={404: {"model": ErrorBody}},
    summary="One anomaly with its evidence and status history",
)
async def get_anomaly(pool: PoolDep, anomaly_id: AnomalyId) -> AnomalyDetail:
    return AnomalyDetail(**await service.detail(pool, anomaly_id))


@router.patch(
    "/anomalies/{anomaly_id}",
    response_model=AnomalyDetail,
    responses={
        404: {"model": ErrorBody},
        409: {"model": ErrorBody},
        413: {"model": ErrorBody},
    },
    summary="Acknowledge, resolve or reopen an anomaly",
)
async def change_status(
    caller: WriterDep,
    pool: PoolDep,
    settings: SettingsDep,
    background: BackgroundTasks,
    anomaly_id: AnomalyId,
    change: StatusChange,
) -> AnomalyDetail:
    row = await service.transition(pool, anomaly_id, change.status, caller.actor, change.note)
    # After the answer: the incident's Slack message shows the change at once (nudge.py).
    background.add_task(nudge, settings, anomaly_id)
    return AnomalyDetail(**row)
