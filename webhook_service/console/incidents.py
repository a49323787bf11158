"""The landing page: incidents that need someone first, worst first, with filters and keyset
pages; its table refreshes in place (static/console.js asks for `?partial=rows`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from sentinelops.severity import HIGHEST_FIRST, LOWEST_FIRST
from webhook_service.anomalies import repository, service
from webhook_service.console.access import BadFilter, Viewer, viewer
from webhook_service.console.render import page
from webhook_service.deps import PoolDep

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
STATUSES = {  # the filter's choices: what it reads, status filter, only_open
    "active": ("open and acknowledged", None, True),
    "open": ("open", "open", False),
    "acknowledged": ("acknowledged", "acknowledged", False),
    "resolved": ("resolved", "resolved", False),
    "all": ("all", None, False),
}
# What the filter form offers, from the same tables the filters are checked against.
CHOICES = {"statuses": {k: v[0] for k, v in STATUSES.items()}, "severities": HIGHEST_FIRST}


def read_filters(request: Request, rules: list[str]) -> dict[str, str]:
    """The filters as chosen (empty means any); BadFilter names one it does not know."""
    query = request.query_params
    chosen = {
        "status": query.get("status") or "active",
        "severity": query.get("severity", ""),
        "rule": query.get("rule", ""),
        "demo": query.get("demo", ""),
    }
    if chosen["status"] not in STATUSES:
        raise BadFilter(f"status must be one of {', '.join(STATUSES)}")
    if chosen["severity"] not in ("", *LOWEST_FIRST):
        raise BadFilter(f"severity must be one of {', '.join(LOWEST_FIRST)}")
    if chosen["rule"] and (len(chosen["rule"]) > 100 or chosen["rule"] not in rules):
        raise BadFilter("no anomaly has that rule; choose one from the list")
    if chosen["demo"] not in ("", "only"):
        raise BadFilter("demo must be empty or only")
    return chosen


@router.get("/", include_in_schema=False)
async def root() -> Response:
    return RedirectResponse("/console", status_code=307)


@router.get("/console")
async def incidents(
    request: Request, pool: PoolDep, who: Annotated[Viewer, Depends(viewer)]
) -> Response:
    async with pool.connection() as conn:
        rules = await repository.rules_seen(conn)
    try:
        chosen = read_filters(request, rules)
    except BadFilter as exc:
        context = {"viewer": who, "rules": rules, "chosen": dict(request.query_params), **CHOICES}
        return page(request, "incidents.html", {**context, "error": str(exc), "rows": []}, 400)
    _, status, only_open = STATUSES[chosen["status"]]
    filters = {
        "only_open": only_open,
        "status": status,
        "severity": chosen["severity"] or None,
        "rule": chosen["rule"] or None,
        "demo_only": chosen["demo"] == "only",
    }
    cursor = request.query_params.get("cursor") or None
    rows, next_cursor = await service.page(pool, filters, "attention", cursor, PAGE_SIZE)
    template = "incident_rows.html" if request.query_params.get("partial") == "rows" else None
    context = {
        **CHOICES,
        "viewer": who,
        "rules": rules,
        "chosen": chosen,
        "rows": rows,
        "next_cursor": next_cursor,
        "paged": cursor is not None,
        "filter_query": {k: v for k, v in chosen.items() if v},
    }
    return page(request, template or "incidents.html", context)
