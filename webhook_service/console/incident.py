"""One incident: what fired, the chart of its metric, the evidence as a table, the status
history, the Acknowledge / Resolve / Reopen forms (the same lifecycle service as the API), and
the form that silences its rule for a while (posted to console/silences.py)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from sentinelops.windows import WINDOW, window_key
from webhook_service.anomalies import service
from webhook_service.anomalies.lifecycle import ALLOWED_TRANSITIONS, InvalidTransition, Status
from webhook_service.anomalies.schemas import AnomalyDetail
from webhook_service.console import access, queries
from webhook_service.console.access import Viewer, viewer
from webhook_service.console.chart import Chart, Point
from webhook_service.console.render import page
from webhook_service.deps import PoolDep
from webhook_service.slack.nudge import nudge

router = APIRouter(include_in_schema=False)
AnomalyId = Annotated[int, Path(ge=1, le=2**63 - 1)]
CONTEXT = timedelta(hours=6)  # drawn before the incident and after it (or up to now)
MAX_POINTS = 288  # longer ranges are bucketed
NOTE_LIMIT = 2000
# Shown elsewhere on the page (the chart, the sample events) or only in the raw JSON.
NOT_IN_TABLE = {"rule_definition", "chart", "sample_event_ids"}
ACTIONS = {Status.ACKNOWLEDGED: "Acknowledge", Status.RESOLVED: "Resolve", Status.OPEN: "Reopen"}
SILENCE_FOR = timedelta(hours=2)  # the incident page's "Silence this rule" (console/silences.py)


@router.get("/console/incidents/{anomaly_id}")
async def incident_page(
    request: Request, pool: PoolDep, anomaly_id: AnomalyId, who: Annotated[Viewer, Depends(viewer)]
) -> Response:
    return await render(request, pool, anomaly_id, who)


@router.get("/console/incidents/{anomaly_id}.json")
async def incident_json(
    pool: PoolDep, anomaly_id: AnomalyId, who: Annotated[Viewer, Depends(viewer)]
) -> Response:
    """The anomaly as GET /api/v1/anomalies/{id} returns it, for a signed-in browser."""
    detail = AnomalyDetail(**await service.detail(pool, anomaly_id))
    return JSONResponse(detail.model_dump(mode="json"), headers={"Cache-Control": "no-store"})


@router.post("/console/incidents/{anomaly_id}/status")
async def change_status(
    request: Request, pool: PoolDep, background: BackgroundTasks, anomaly_id: AnomalyId
) -> Response:
    fields = await access.form(request)
    session = await access.acting(request, fields)
    note = fields.get("note", "").strip() or None
    try:
        target = Status(fields.get("status", ""))
    except ValueError:
        return await render(request, pool, anomaly_id, Viewer(session),
                            "Choose acknowledge, resolve or reopen.", 422)  # fmt: skip
    if note is not None and (len(note) > NOTE_LIMIT or "\x00" in note):
        return await render(request, pool, anomaly_id, Viewer(session),
                            f"A note holds at most {NOTE_LIMIT} characters.", 422)  # fmt: skip
    try:
        await service.transition(pool, anomaly_id, target, session.actor, note)
    except InvalidTransition as exc:
        # Someone else moved it first (another tab, a colleague, Slack): say so on the page.
        return await render(request, pool, anomaly_id, Viewer(session), exc.message, 409)
    # After the redirect is sent: the incident's Slack message shows the change (nudge.py).
    background.add_task(nudge, request.app.state.settings, anomaly_id)
    # Post/redirect/get: a reload does not send the form again.
    return RedirectResponse(f"/console/incidents/{anomaly_id}?done={target}", status_code=303)


async def render(
    request: Request,
    pool: PoolDep,
    anomaly_id: int,
    who: Viewer,
    problem: str | None = None,
    status_code: int = 200,
) -> Response:
    anomaly = await service.detail(pool, anomaly_id)  # NotFound renders the 404 page
    now = datetime.now(UTC)
    chart = await _chart(pool, anomaly, now)
    settings = request.app.state.settings
    done = request.query_params.get("done")
    context = {
        "viewer": who,
        "anomaly": anomaly,
        "evidence_rows": evidence_rows(anomaly["evidence"]),
        "chart": chart,
        "actions": [
            (s, ACTIONS[s]) for s in ACTIONS if s in ALLOWED_TRANSITIONS[anomaly["status"]]
        ],
        "problem": problem,
        "done": done if done in ACTIONS.keys() and not problem else None,
        "links": links(anomaly, settings.dagster_url),
        "samples": anomaly["evidence"].get("sample_event_ids") or [],
        "now": now,
        "silence_hours": int(SILENCE_FOR.total_seconds() // 3600),
    }
    return page(request, "incident.html", context, status_code)


async def _chart(pool: PoolDep, anomaly: dict, now: datetime) -> Chart | None:
    since = anomaly["window_start"] - CONTEXT
    until = max(min(anomaly["window_end"] + CONTEXT, now), anomaly["window_end"])
    windows = math.ceil((until - since) / WINDOW)
    bucket = WINDOW * max(1, math.ceil(windows / MAX_POINTS))
    shown = anomaly["evidence"].get("chart") or {}
    async with pool.connection() as conn:
        rows = await queries.series(conn, anomaly["rule"], shown.get("scope", anomaly["scope"]),
                                    shown.get("measure"), since, until, bucket)  # fmt: skip
    if not rows:
        return None
    points = [Point(r["bucket"], r["observed"], r["expected"], r["bound"]) for r in rows]
    window = (anomaly["window_start"], anomaly["window_end"])
    return Chart(rows[0]["label"], rows[0]["bound_kind"], bucket, points, since, until, window)


def evidence_rows(evidence: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """The evidence flattened into (name, value) rows: nested objects become `a › b`."""
    rows: list[tuple[str, str]] = []
    for key, value in evidence.items():
        if not prefix and key in NOT_IN_TABLE:
            continue
        name = f"{prefix}{key.replace('_', ' ')}"
        if isinstance(value, dict) and value:
            rows += evidence_rows(value, f"{name} › ")
        elif isinstance(value, list):
            rows.append((name, ", ".join(str(v) for v in value) or "none"))
        elif value is None:
            rows.append((name, "none"))
        else:
            rows.append((name, str(value)))
    return rows


def links(anomaly: dict, dagster_url: str) -> dict[str, str]:
    """Where the incident came from in the Dagster UI: its run and its rule asset's partition."""
    base = dagster_url.rstrip("/")
    partition = window_key(anomaly["window_start"])
    run_id = anomaly["evidence"].get("dagster_run_id")
    tag = quote(f"tag:dagster/partition={partition}", safe="")
    return {
        "json": f"/console/incidents/{anomaly['id']}.json",
        "run": f"{base}/runs/{run_id}" if run_id else f"{base}/runs?q%5B0%5D={tag}",
        "partition": f"{base}/assets/anomalies?view=partitions&partition={quote(partition)}",
        "events": "/console/events?"
        + f"since={quote(anomaly['window_start'].isoformat())}"
        + f"&until={quote(anomaly['window_end'].isoformat())}",
    }
