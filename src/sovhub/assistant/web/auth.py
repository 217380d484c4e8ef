"""Sign in with a local account or a national eID, sign out, and choose the UI language.

Sessions, CSRF tokens, the brute-force throttle and the eID flow itself (OpenID Connect,
authorization code + PKCE at ``/auth/oidc/{idp}/login``) are the access area's
(:mod:`sovhub.access.sessions`, :mod:`sovhub.access.csrf`, :mod:`sovhub.access.throttle`,
:mod:`sovhub.access.auth_routes`); the sign-in page offers one button per configured provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from ...access.addresses import client_address
from ...access.csrf import verify_csrf
from ...access.sessions import clear_session, issue_session, set_cookie
from ...access.throttle import LoginThrottle, password_keys
from ...errors import PermissionDenied, RateLimited
from ...hub import Hub
from ...store.tables import User
from ...users import normalize_email, user_by_email
from ..i18n import UiCatalogs
from .passwords import hash_password, needs_rehash, verify_password
from .render import LANG_COOKIE, Page, page_for, render, request_hub

__all__ = ["SignInOption", "local_path", "router", "sign_in_options"]

router = APIRouter(include_in_schema=False)

_LANG_MAX_AGE = 365 * 24 * 3600


def local_path(value: object, default: str = "/") -> str:
    """Only same-site paths: "//evil.example" and "/\\evil" would leave the site (open redirect)."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    return value


@dataclass(frozen=True, slots=True)
class SignInOption:
    """A national eID button: the provider's short name, the name people know it by, where it starts."""

    name: str
    label: str
    url: str


def sign_in_options(hub: Hub, next_path: str = "/") -> list[SignInOption]:
    """One option per configured identity provider, in configuration order; each returns to `next_path`."""
    query = "" if next_path == "/" else "?" + urlencode({"return_to": next_path})
    return [
        SignInOption(name, config.display_name or name, f"/auth/oidc/{quote(name, safe='')}/login{query}")
        for name, config in hub.settings.access.idps.items()
    ]


def _login_page(page: Page, next_path: str, status: int = 200, **context: Any) -> Response:
    return render(page, "login.html", status=status, next=next_path,
                  identity_providers=sign_in_options(page.hub, next_path), **context)


def _check_password(hub: Hub, email: str, password: str) -> int | None:
    with hub.db.session() as s:
        user = user_by_email(s, email)
        stored = user.password_hash if user is not None else None
        if not verify_password(stored, password) or user is None:
            return None
        if stored is not None and needs_rehash(stored):
            user.password_hash = hash_password(password)
        return user.id


@router.get("/login")
async def login_form(request: Request) -> Response:
    page = page_for(request)
    if page.user is not None:
        return RedirectResponse(local_path(request.query_params.get("next")), status_code=303)
    return _login_page(page, local_path(request.query_params.get("next")))


@router.post("/login")
async def login(request: Request) -> Response:
    hub = request_hub(request)
    form = await request.form()
    page = page_for(request)
    next_path = local_path(form.get("next"))
    email = str(form.get("email") or "").strip()
    password = str(form.get("password") or "")
    try:
        verify_csrf(request, form.get("csrf_token"))
    except PermissionDenied:
        return _login_page(page, next_path, 403, email=email, error="csrf")
    throttle = hub.services.get(LoginThrottle)
    keys = password_keys(hub, normalize_email(email), client_address(request))
    try:
        await throttle.attempt(keys)  # counted before the password is checked
    except RateLimited as exc:
        seconds = int(float(exc.headers.get("retry-after", "60")))
        response = _login_page(page, next_path, 429, email=email, error="throttled", seconds=seconds)
        response.headers["retry-after"] = str(seconds)
        return response
    user_id = await anyio.to_thread.run_sync(_check_password, hub, email, password) if email and password else None
    if user_id is None:
        return _login_page(page, next_path, 401, email=email, error="invalid")
    await throttle.succeed(keys)
    redirect = RedirectResponse(next_path, status_code=303)
    issue_session(redirect, user_id, None, request=request)
    return redirect


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = await request.form()
    verify_csrf(request, form.get("csrf_token"))
    response = RedirectResponse("/login", status_code=303)
    clear_session(request, response)
    return response


def _save_locale(hub: Hub, user_id: int, code: str) -> None:
    with hub.db.session() as s:
        user = s.get(User, user_id)
        if user is not None:
            user.locale = code


@router.post("/lang")
async def set_language(request: Request) -> Response:
    """Remember the chosen UI language: on the account when signed in, in a cookie always."""
    hub = request_hub(request)
    form = await request.form()
    verify_csrf(request, form.get("csrf_token"))
    code = str(form.get("lang") or "")
    response = RedirectResponse(local_path(form.get("next")), status_code=303)
    if not hub.services.get(UiCatalogs).supports(code):
        return response
    page = page_for(request)
    if page.user is not None:
        await anyio.to_thread.run_sync(_save_locale, hub, page.user.id, code)
    set_cookie(request, response, LANG_COOKIE, code, _LANG_MAX_AGE)
    return response


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={_quote(target)}", status_code=303)


def _quote(value: str) -> str:
    return quote(value, safe="/")


def signed_in(request: Request) -> Page | RedirectResponse:
    """The page of a signed-in person, or a redirect to the sign-in form."""
    page = page_for(request)
    if page.user is None:
        return login_redirect(request)
    return page
