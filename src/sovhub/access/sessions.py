"""Signed session cookies for people signed in to the web app (password or national eID).

The cookie holds ``{user id, assurance level, identity provider, CSRF secret, issued-at}``,
signed with ``settings.signing_key`` (itsdangerous, HMAC-SHA1 over a salted key) and
time-limited by ``access.session_max_age_s``. It is HttpOnly, SameSite=Lax, and Secure
whenever the request came over TLS (``X-Forwarded-Proto`` counts only with
``access.trust_forwarded_proto``), so a proxy cannot be spoofed into downgrading it.

Usage (web colleague's password login)::

    from sovhub.access.sessions import issue_session, current_user, clear_session

    response = RedirectResponse("/", status_code=303)
    issue_session(response, user.id, None, request=request)   # acr None: password sign-in
    ...
    user = current_user(request)        # SessionUser | None
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select
from starlette.requests import HTTPConnection
from starlette.responses import Response

from ..store.base import as_utc
from ..store.tables import User

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = [
    "ASSURANCE_LEVELS",
    "SessionUser",
    "assurance_at_least",
    "clear_session",
    "current_user",
    "is_secure_request",
    "issue_session",
    "session_serializer",
]

AssuranceLevel = Literal["low", "substantial", "high"]
# eIDAS levels in increasing order; a password sign-in has no level (None).
ASSURANCE_LEVELS: tuple[str, ...] = ("low", "substantial", "high")
_SALT = "sovhub.session.v1"


@dataclass(frozen=True, slots=True)
class SessionUser:
    """Who is signed in: the user id, how strongly (eIDAS level or None), and the form CSRF secret."""

    user_id: int
    acr: str | None
    idp: str | None
    csrf: str
    issued_at: float

    def assurance_at_least(self, level: str) -> bool:
        return assurance_at_least(self.acr, level)


def assurance_at_least(acr: str | None, level: str) -> bool:
    """True when `acr` (an eIDAS level name) is at least `level`."""
    if acr not in ASSURANCE_LEVELS:
        return False
    return ASSURANCE_LEVELS.index(acr) >= ASSURANCE_LEVELS.index(level)


def _hub(conn: HTTPConnection) -> Hub:
    return conn.app.state.hub  # type: ignore[no-any-return]


def session_serializer(secret_key: str, salt: str = _SALT) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=salt)


def is_secure_request(conn: HTTPConnection) -> bool:
    """Did this request reach the hub over TLS? Trusts X-Forwarded-Proto only when configured."""
    if conn.url.scheme in ("https", "wss"):
        return True
    if _hub(conn).settings.access.trust_forwarded_proto:
        proto = conn.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        return proto == "https"
    return False


def set_cookie(conn: HTTPConnection, response: Response, name: str, value: str, max_age: int) -> None:
    """Every cookie the hub sets: HttpOnly, SameSite=Lax, Secure over TLS, whole site."""
    response.set_cookie(
        name, value, max_age=max_age, path="/", httponly=True, samesite="lax", secure=is_secure_request(conn)
    )


def issue_session(
    response: Response,
    user_id: int,
    acr: str | None,
    *,
    request: HTTPConnection,
    idp: str | None = None,
) -> SessionUser:
    """Sign `user_id` in on `response` (call after verifying a password or an eID sign-in).

    `acr` is an eIDAS level ('low', 'substantial', 'high') or None for a password. A fresh CSRF
    secret is drawn each time, so a token seen before sign-in is useless after it.
    """
    if acr is not None and acr not in ASSURANCE_LEVELS:
        raise ValueError(f"acr must be one of {ASSURANCE_LEVELS} or None, got {acr!r}")
    settings = _hub(request).settings
    user = SessionUser(
        user_id=int(user_id), acr=acr, idp=idp, csrf=secrets.token_urlsafe(24), issued_at=time.time()
    )
    payload: dict[str, Any] = {"u": user.user_id, "a": acr, "i": idp, "c": user.csrf, "t": user.issued_at}
    value = session_serializer(settings.signing_key).dumps(payload)
    set_cookie(request, response, settings.access.session_cookie, value, settings.access.session_max_age_s)
    request.scope.setdefault("state", {})["sovhub_session"] = user
    return user


def current_user(request: HTTPConnection) -> SessionUser | None:
    """The signed-in person, or None (no cookie, bad signature, expired)."""
    cached = request.scope.get("state", {}).get("sovhub_session")
    if isinstance(cached, SessionUser):
        return cached
    settings = _hub(request).settings
    raw = request.cookies.get(settings.access.session_cookie)
    if not raw:
        return None
    try:
        data, signed_at = session_serializer(settings.signing_key).loads(
            raw, max_age=settings.access.session_max_age_s, return_timestamp=True
        )
    except BadSignature:
        # Covers tampering, a rotated secret_key and expiry (SignatureExpired is a subclass).
        return None
    if not isinstance(data, dict) or not isinstance(data.get("u"), int) or not isinstance(data.get("c"), str):
        return None
    if not _account_predates(_hub(request), data["u"], signed_at):
        return None
    acr = data.get("a")
    user = SessionUser(
        user_id=data["u"],
        acr=acr if acr in ASSURANCE_LEVELS else None,
        idp=data.get("i") if isinstance(data.get("i"), str) else None,
        csrf=data["c"],
        issued_at=float(data.get("t") or 0.0),
    )
    request.scope.setdefault("state", {})["sovhub_session"] = user
    return user


def _account_predates(hub: Hub, user_id: int, signed_at: datetime) -> bool:
    """Is `user_id` an account that existed when the cookie was signed?

    An erased person's id may come back for a later account (SQLite gives a new row the highest
    id plus one, so erasing the newest account frees its id); their old cookie must not sign in
    as the newcomer. The signing time is the one itsdangerous signed into the cookie, not a field
    the holder could edit. Whole seconds: the signature's clock has no finer grain, so one second
    of slack.
    """
    with hub.db.session() as db:
        created = db.scalar(select(User.created_at).where(User.id == user_id))
    return created is not None and as_utc(created) <= signed_at + timedelta(seconds=1)


def clear_session(request: HTTPConnection, response: Response) -> None:
    """Sign out: expire the cookie with the same attributes it was set with."""
    settings = _hub(request).settings
    response.delete_cookie(
        settings.access.session_cookie, path="/", httponly=True, samesite="lax", secure=is_secure_request(request)
    )
    request.scope.setdefault("state", {}).pop("sovhub_session", None)
