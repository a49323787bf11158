"""Silences in the console: the list (the order of GET /api/v1/silences), silencing an
incident's rule and scope from its page, and "End now". Through the same service as the API:
the same checks (NewSilence), the same end that releases what the silence held, the same nudge."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from webhook_service.anomalies import service as anomalies
from webhook_service.console import access, incident
from webhook_service.console.access import Viewer, viewer
from webhook_service.console.render import page
from webhook_service.deps import PoolDep
from webhook_service.silences import service
from webhook_service.silences.endpoints import nudge_released
from webhook_service.silences.schemas import NewSilence
from webhook_service.silences.service import AlreadyExpired, InvalidSilence

router = APIRouter(include_in_schema=False)
LIMIT = 200
AnomalyId = Annotated[int, Path(ge=1, le=2**63 - 1)]
SilenceId = Annotated[int, Path(ge=1, le=2**63 - 1)]
NO_REASON = "Give a reason (1 to 500 characters): it tells the others why this rule is quiet."


@router.get("/console/silences")
async def silences_page(
    request: Request, pool: PoolDep, who: Annotated[Viewer, Depends(viewer)]
) -> Response:
    return await _render(request, pool, who)


@router.post("/console/incidents/{anomaly_id}/silence")
async def silence_rule(request: Request, pool: PoolDep, anomaly_id: AnomalyId) -> Response:
    fields = await access.form(request)
    session = await access.acting(request, fields)
    anomaly = await anomalies.detail(pool, anomaly_id)  # NotFound renders the 404 page
    try:
        new = NewSilence(
            rule=anomaly["rule"],
            scope=anomaly["scope"],
            ends_at=datetime.now(UTC) + incident.SILENCE_FOR,
            reason=fields.get("reason", "").strip(),
        )
        created = await service.create(pool, new, session.actor)
    except (ValidationError, InvalidSilence) as exc:
        return await incident.render(request, pool, anomaly_id, Viewer(session),
                                     _explain(exc), 422)  # fmt: skip
    # Post/redirect/get, to the list that shows it with its end and its "End now".
    return RedirectResponse(f"/console/silences?created={created['id']}", status_code=303)


@router.post("/console/silences/{silence_id}/end")
async def end_silence(
    request: Request, pool: PoolDep, background: BackgroundTasks, silence_id: SilenceId
) -> Response:
    fields = await access.form(request)
    session = await access.acting(request, fields)
    try:
        _, released = await service.end(pool, silence_id, session.actor)  # NotFound: a 404 page
    except AlreadyExpired as exc:
        # Someone ended it first (another tab, the API) or it ran out meanwhile.
        return await _render(request, pool, Viewer(session), exc.message, 409)
    nudge_released(background, request.app.state.settings, released)
    return RedirectResponse(f"/console/silences?ended={silence_id}", status_code=303)


async def _render(
    request: Request, pool: PoolDep, who: Viewer, problem: str | None = None, status: int = 200
) -> Response:
    rows = await service.listing(pool, LIMIT)
    query = request.query_params
    done = None
    if not problem and query.get("created", "").isdigit():
        done = f"Silence #{query['created']} created."
    elif not problem and query.get("ended", "").isdigit():
        done = f"Silence #{query['ended']} ended: what it held is posted now."
    context = {"viewer": who, "rows": rows, "problem": problem, "done": done, "limit": LIMIT}
    return page(request, "silences.html", context, status)


def _explain(exc: ValidationError | InvalidSilence) -> str:
    """NewSilence's refusal in the console's words; the reason is the only field typed here."""
    if isinstance(exc, InvalidSilence):
        return exc.message
    error = exc.errors()[0]
    if error["loc"] and error["loc"][0] == "reason":
        return NO_REASON
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])
