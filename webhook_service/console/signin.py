"""Signing in with an API token, and out: the session lives in an HttpOnly, SameSite=Strict
cookie (sessions.py); the token itself is never stored in the browser."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from webhook_service.console import access
from webhook_service.console.access import SignInRequired
from webhook_service.console.render import page
from webhook_service.console.sessions import COOKIE, LIFETIME_SECONDS

router = APIRouter(include_in_schema=False)


@router.get("/console/sign-in")
async def sign_in_page(request: Request, next: Annotated[str, Query()] = "/console") -> Response:
    return _form(request, access.safe_next(next))


@router.post("/console/sign-in")
async def sign_in(request: Request) -> Response:
    fields = await access.form(request)
    target = access.safe_next(fields.get("next"))
    authenticator = request.app.state.authenticator
    if not authenticator.configured:
        return _form(request, target, "SENTINELOPS_API_TOKEN is not set: nobody can sign in"
                     " until it is (sentinelops up generates one)", 503)  # fmt: skip
    holder = authenticator.holder(fields.get("token", "").strip())
    if holder is None:
        return _form(request, target, "That token is not valid.", 401)
    _, cookie = access.signer(request).issue(holder)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=LIFETIME_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/console/sign-out")
async def sign_out(request: Request) -> Response:
    fields = await access.form(request)
    session = access.current_session(request)
    if session is not None:  # a stale form from an ended session just lands on sign-in
        await access.acting(request, fields)
    response = RedirectResponse(access.SIGN_IN, status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


def _form(request: Request, target: str, error: str | None = None, status: int = 200) -> Response:
    if error is None and access.current_session(request) is not None:
        return RedirectResponse(target, status_code=303)  # already signed in
    return page(request, "sign_in.html", {"next": target, "error": error, "viewer": None}, status)


def redirect_to_sign_in(request: Request, exc: SignInRequired) -> Response:
    return RedirectResponse(exc.location, status_code=303)
