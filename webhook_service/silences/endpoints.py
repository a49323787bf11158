"""The silence API: create, list, and end early."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Query

from sentinelops.settings import Settings
from webhook_service.deps import PoolDep, SettingsDep, WriterDep, require_read
from webhook_service.schemas import ErrorBody
from webhook_service.silences import service
from webhook_service.silences.schemas import NewSilence, Silence, SilencePage
from webhook_service.slack.nudge import nudge

router = APIRouter(
    tags=["silences"],
    responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
SilenceId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get(
    "/silences",
    response_model=SilencePage,
    dependencies=[Depends(require_read)],
    summary="List silences: active and upcoming first, then expired",
)
async def list_silences(
    pool: PoolDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> SilencePage:
    return SilencePage(items=[Silence(**row) for row in await service.listing(pool, limit)])


@router.post(
    "/silences",
    response_model=Silence,
    status_code=201,
    responses={413: {"model": ErrorBody}},
    summary="Silence a rule, a scope or both for a while",
)
async def create_silence(caller: WriterDep, pool: PoolDep, new: NewSilence) -> Silence:
    return Silence(**await service.create(pool, new, caller.actor))


@router.delete(
    "/silences/{silence_id}",
    response_model=Silence,
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
    summary="End a silence now; what it held is posted",
)
async def end_silence(
    caller: WriterDep,
    pool: PoolDep,
    settings: SettingsDep,
    background: BackgroundTasks,
    silence_id: SilenceId,
) -> Silence:
    row, released = await service.end(pool, silence_id, caller.actor)
    nudge_released(background, settings, released)
    return Silence(**row)


def nudge_released(background: BackgroundTasks, settings: Settings, released: list[int]) -> None:
    """After the answer: post what an ended silence held now rather than at the next alerts
    run. Sequential and best effort (nudge.py); a row not nudged stays due for the alerts job.
    The console's "End now" calls it too."""
    for anomaly_id in released:
        background.add_task(nudge, settings, anomaly_id)
