"""CSRF protection for HTML form posts (synchronizer token).

A signed-in person's token is the CSRF secret inside their signed session cookie; before
sign-in (the login form itself, against login CSRF) it is a random value in a separate signed
cookie. Forms carry it in a hidden ``csrf_token`` field (or the ``X-CSRF-Token`` header for
fetch()); :func:`verify_csrf` compares in constant time. SameSite=Lax on the cookies is a
second layer, not a replacement: it does not cover same-site subdomains or old browsers.

Usage::

    from sovhub.access.csrf import csrf_token, verify_csrf

    @router.get("/settings")
    async def page(request: Request):
        response = templates.TemplateResponse(...)            # render first, then:
        token = csrf_token(request, response)                  # put in <input name="csrf_token">
        ...

    @router.post("/settings")
    async def save(request: Request):
        form = await request.form()
        verify_csrf(request, form.get("csrf_token"))           # raises PermissionDenied (403)
"""

from __future__ import annotations

import hmac
import secrets

from itsdangerous import BadSignature
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from ..errors import PermissionDenied
from .sessions import current_user, session_serializer, set_cookie

__all__ = ["CSRF_COOKIE", "CSRF_FIELD", "CSRF_HEADER", "csrf_token", "require_csrf", "verify_csrf"]

CSRF_COOKIE = "sovhub_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_SALT = "sovhub.csrf.v1"
_ANON_MAX_AGE = 2 * 3600


def _anonymous_secret(request: HTTPConnection) -> str | None:
    raw = request.cookies.get(CSRF_COOKIE)
    if not raw:
        return None
    secret_key = request.app.state.hub.settings.signing_key
    try:
        value = session_serializer(secret_key, _SALT).loads(raw, max_age=_ANON_MAX_AGE)
    except BadSignature:
        return None
    return value if isinstance(value, str) else None


def csrf_token(request: HTTPConnection, response: Response | None = None) -> str:
    """The token to embed in a form. Without a session, sets a pre-session cookie on `response`."""
    user = current_user(request)
    if user is not None:
        return user.csrf
    existing = request.scope.get("state", {}).get("sovhub_csrf") or _anonymous_secret(request)
    if existing:
        return str(existing)
    if response is None:
        raise ValueError("csrf_token needs the response to set the pre-session cookie on")
    secret = secrets.token_urlsafe(24)
    value = session_serializer(request.app.state.hub.settings.signing_key, _SALT).dumps(secret)
    set_cookie(request, response, CSRF_COOKIE, value, _ANON_MAX_AGE)
    request.scope.setdefault("state", {})["sovhub_csrf"] = secret
    return secret


def verify_csrf(request: HTTPConnection, token: object) -> None:
    """Refuse (403, code csrf_failed) unless `token` matches this browser's CSRF secret."""
    user = current_user(request)
    expected = user.csrf if user is not None else _anonymous_secret(request)
    if not expected or not isinstance(token, str) or not token:
        raise PermissionDenied("missing or expired form token; reload the page and try again", code="csrf_failed")
    if not hmac.compare_digest(expected.encode(), token.encode()):
        raise PermissionDenied("invalid form token; reload the page and try again", code="csrf_failed")


async def require_csrf(request: Request) -> None:
    """FastAPI dependency for POST handlers: header X-CSRF-Token or form field csrf_token."""
    token: object = request.headers.get(CSRF_HEADER)
    if not token:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            token = (await request.form()).get(CSRF_FIELD)
    verify_csrf(request, token)
