"""Who is looking at the console, and whether they may act: the session cookie, public reads,
CSRF on every form that changes something, and same-origin checks on every POST."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import Request

from webhook_service.auth import Authenticator
from webhook_service.console.sessions import COOKIE, Session, SessionSigner, csrf_matches
from webhook_service.errors import SentinelOpsError

SIGN_IN = "/console/sign-in"


@dataclass(frozen=True)
class Viewer:
    session: Session | None  # None: an anonymous reader (SENTINELOPS_PUBLIC_READS=true)


class BadFilter(ValueError):
    """A page's filter the console cannot use; its message says how to write it."""


class SignInRequired(Exception):
    """Rendered as a redirect to the sign-in page that comes back to `next_path`."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path

    @property
    def location(self) -> str:
        return f"{SIGN_IN}?next={quote(self.next_path, safe='/')}"


class Forbidden(SentinelOpsError):
    status_code = 403


def signer(request: Request) -> SessionSigner:
    return request.app.state.session_signer.signer  # type: ignore[no-any-return]


def _authenticator(request: Request) -> Authenticator:
    return request.app.state.authenticator  # type: ignore[no-any-return]


def current_session(request: Request) -> Session | None:
    session = signer(request).read(request.cookies.get(COOKIE))
    if session is None or not _authenticator(request).holds(session.holder):
        return None  # expired, forged, or the holder's token was removed
    return session


def here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


async def viewer(request: Request) -> Viewer:
    """Page dependency: the signed-in person, or an anonymous reader when reads are public."""
    session = current_session(request)
    if session is None and not _authenticator(request).public_reads:
        raise SignInRequired(here(request))
    request.state.viewer = Viewer(session)
    return request.state.viewer  # type: ignore[no-any-return]


async def form(request: Request) -> dict[str, str]:
    """A urlencoded form, after a same-origin check (RequestGuard already capped its size)."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden("this form was sent from another site")
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[-1] for name, values in fields.items()}


async def acting(request: Request, fields: dict[str, str]) -> Session:
    """The signed-in person behind a state-changing form, its CSRF token checked."""
    session = current_session(request)
    if session is None:
        # Actions are never public: a public reader (or an expired session) signs in first.
        raise SignInRequired(safe_next(request.headers.get("referer"), request))
    if not csrf_matches(session, fields.get("csrf")):
        raise Forbidden("the form's security token is missing or stale; reload the page")
    request.state.viewer = Viewer(session)
    return session


def safe_next(target: str | None, request: Request | None = None) -> str:
    """Where to go after signing in: a console path on this site, never another site."""
    if target and request is not None and target.startswith(str(request.base_url)):
        target = "/" + target[len(str(request.base_url)) :]
    if not target or not target.startswith("/console") or target.startswith("//"):
        return "/console"
    return target
