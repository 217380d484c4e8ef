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
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from ...access.addresses import client_address
from ...access.csrf import verify_csrf
from ...access.sessions import clear_session, issue_session, set_cookie
from ...access.throttle import LoginThrottle, password_keys
from ...errors import InvalidRequest, NotFound, PermissionDenied, RateLimited
from ...hub import Hub
from ...users import normalize_email
from ..i18n import UiCatalogs
from ..people import check_password, redeem_reset, reset_is_valid, save_locale
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
    user_id = await anyio.to_thread.run_sync(check_password, hub, email, password) if email and password else None
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
        await anyio.to_thread.run_sync(save_locale, hub, page.user.id, code)
    set_cookie(request, response, LANG_COOKIE, code, _LANG_MAX_AGE)
    return response


@router.get("/reset/{token}")
async def reset_form(token: str, request: Request) -> Response:
    """The page of a staff-issued reset link: a new password, once."""
    page = page_for(request)
    valid = await anyio.to_thread.run_sync(reset_is_valid, page.hub, token)
    return render(page, "reset.html", status=200 if valid else 404, token=token, error=None if valid else "invalid")


@router.post("/reset/{token}")
async def reset_submit(token: str, request: Request) -> Response:
    hub = request_hub(request)
    form = await request.form()
    page = page_for(request)
    try:
        verify_csrf(request, form.get("csrf_token"))
    except PermissionDenied:
        return render(page, "reset.html", status=403, token=token, error="csrf")
    try:
        await anyio.to_thread.run_sync(redeem_reset, hub, token, str(form.get("password") or ""))
    except NotFound:
        return render(page, "reset.html", status=404, token=token, error="invalid")
    except InvalidRequest:
        return render(page, "reset.html", status=400, token=token, error="password")
    return RedirectResponse("/login?reset=done", status_code=303)


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={_quote(target)}", status_code=303)


def _quote(value: str) -> str:
    return quote(value, safe="/")


class SignInRequired(Exception):  # noqa: N818 - names the answer (a redirect to sign in), not a fault
    """Raised for a visitor who is not signed in; answered with a redirect to the sign-in form."""


class StaffOnly(Exception):  # noqa: N818 - names the answer (403), not a fault
    """Raised for a signed-in person who is not staff on a staff page; answered with the 403 page."""

    def __init__(self, page: Page) -> None:
        super().__init__("staff only")
        self.page = page


class Redirect(Exception):  # noqa: N818 - names the answer, not a fault
    """Raised to end a page's handler with ``response`` (a redirect back where the visitor came from)."""

    def __init__(self, response: Response) -> None:
        super().__init__("redirect")
        self.response = response


def signed_in(request: Request) -> Page:
    """The page of a signed-in person; raises SignInRequired for anyone else."""
    page = page_for(request)
    if page.user is None:
        raise SignInRequired
    return page


def staff_page(request: Request) -> Page:
    """The page of a signed-in staff member; raises SignInRequired or StaffOnly for anyone else."""
    page = signed_in(request)
    if page.user is None or not page.user.is_staff:
        raise StaffOnly(page)
    return page


async def _sign_in_first(request: Request, exc: Exception) -> Response:
    return login_redirect(request)


async def _redirect(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Redirect)
    return exc.response


async def _forbidden(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StaffOnly)
    return render(exc.page, "error.html", status=403, error="forbidden")


def install_page_handlers(app: FastAPI) -> None:
    """Answer the pages' SignInRequired, StaffOnly and Redirect (handlers need not check who is calling)."""
    app.add_exception_handler(SignInRequired, _sign_in_first)
    app.add_exception_handler(StaffOnly, _forbidden)
    app.add_exception_handler(Redirect, _redirect)
