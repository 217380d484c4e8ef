"""Server-side rendering: the Jinja2 environment, the request's UI language, and page context.

Every page renders through :func:`render`, which resolves who is signed in, which UI language
applies (saved preference, then the language cookie, then Accept-Language) and puts the
translation functions in the template context, so no template can reach a string that skipped
the catalogs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from ...access.csrf import csrf_token
from ...access.sessions import current_user
from ...store.tables import User
from ...web_assets import STATIC_DIR
from ..i18n import UiCatalogs, UiLocale
from ..people import load_user
from .figures import Figures

if TYPE_CHECKING:
    from ...hub import Hub

__all__ = ["LANG_COOKIE", "STATIC_DIR", "Page", "document", "environment", "page_for", "render", "render_markup",
           "request_hub", "static_version"]

LANG_COOKIE = "sovhub_lang"


def static_version() -> str:
    """A digest of the static files: `?v=` changes whenever app.css or app.js does, never otherwise."""
    digest = hashlib.sha256()
    for path in sorted(p for p in STATIC_DIR.iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


@lru_cache(maxsize=1)
def environment() -> Environment:
    """One environment per process: templates are compiled once and cached."""
    env = Environment(
        loader=PackageLoader("sovhub.web_assets", "templates"),
        autoescape=select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.globals["static_version"] = static_version()
    return env


def request_hub(request: Request) -> Hub:
    return request.app.state.hub  # type: ignore[no-any-return]


@dataclass(slots=True)
class Page:
    """What every page knows about its request: the person, the language, the form token."""

    request: Request
    hub: Hub
    ui: UiLocale
    user: User | None
    csrf: str

    @property
    def lang(self) -> str:
        return self.ui.code

    def _(self, message: str, **values: Any) -> str:
        text = self.ui.gettext(message)
        return text % values if values else text


def page_for(request: Request, csrf: str = "") -> Page:
    """Resolve the person and UI language of a request (one primary-key read when signed in)."""
    hub = request_hub(request)
    catalogs = hub.services.get(UiCatalogs)
    session = current_user(request)
    user = load_user(hub, session.user_id) if session is not None else None
    code: str | None = None
    if user is not None and catalogs.supports(user.locale):
        code = user.locale
    elif catalogs.supports(request.cookies.get(LANG_COOKIE)):
        code = request.cookies.get(LANG_COOKIE)
    else:
        code = catalogs.negotiate(request.headers.get("accept-language"))
    return Page(request, hub, catalogs.get(code), user, csrf or (session.csrf if session else ""))


def _translators(ui: UiLocale) -> dict[str, Any]:
    # Translations are trusted text written by translators; values interpolated into them are
    # escaped (Markup % escapes its arguments), so a title or a name cannot inject markup.
    def gettext(message: str, **values: Any) -> Markup:
        text = Markup(ui.gettext(message))
        return text % {k: escape(v) for k, v in values.items()} if values else text

    def ngettext(singular: str, plural: str, num: int, **values: Any) -> Markup:
        text = Markup(ui.ngettext(singular, plural, num))
        return text % {"num": num, **{k: escape(v) for k, v in values.items()}}

    return {"_": gettext, "gettext": gettext, "ngettext": ngettext}


def render(page: Page, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render a template as the page's language; sets the pre-session CSRF cookie when needed."""
    response = HTMLResponse("", status_code=status)
    if not page.csrf:
        page.csrf = csrf_token(page.request, response)
    catalogs = page.hub.services.get(UiCatalogs)
    values: dict[str, Any] = {
        "page": page,
        "lang": page.ui.code,
        "dir": page.ui.direction,
        "user": page.user,
        "csrf": page.csrf,
        "ui": page.ui,
        "languages": [(code, catalogs.get(code).native_name) for code in catalogs.codes],
        "path": page.request.url.path,
        **context,
    }
    return _respond(page.ui, template, values, response, vary="Accept-Language, Cookie")


def document(ui: UiLocale, template: str, **context: Any) -> HTMLResponse:
    """A stand-alone document (a statement to print or file) in `ui`'s language: no session, no form."""
    return _respond(ui, template, {"lang": ui.code, "dir": ui.direction, "ui": ui, **context},
                    HTMLResponse(""), vary="Accept-Language")


def render_markup(ui: UiLocale, template: str, **context: Any) -> str:
    """A template rendered in `ui`'s language, as a string (an e-mail's HTML part)."""
    return environment().get_template(template).render(
        {"figures": Figures(ui), **_translators(ui), "lang": ui.code, "dir": ui.direction, "ui": ui, **context})


def _respond(ui: UiLocale, template: str, values: dict[str, Any], response: HTMLResponse, *,
             vary: str) -> HTMLResponse:
    figures = Figures(ui)
    body = environment().get_template(template).render({"figures": figures, **_translators(ui), **values})
    response.body = body.encode("utf-8")
    response.headers["content-length"] = str(len(response.body))
    response.headers["content-language"] = ui.code
    response.headers["cache-control"] = "no-store"
    response.headers["vary"] = vary
    _security_headers(response, figures.style_sources())
    return response


def _security_headers(response: HTMLResponse, styles: list[str] | None = None) -> None:
    # Only our own scripts and styles run: no inline script, no third-party origin. A chart's
    # own style blocks are allowed by their hashes, one by one.
    style_src = " ".join(["'self'", *(styles or [])])
    response.headers["content-security-policy"] = (
        f"default-src 'self'; script-src 'self'; style-src {style_src}; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    )
    response.headers["x-content-type-options"] = "nosniff"
    response.headers["referrer-policy"] = "same-origin"
