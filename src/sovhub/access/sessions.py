"""Sessions of people signed in to the web app (password or national eID): server-side, revocable.

The cookie holds ``{session token, CSRF secret}``, signed with ``settings.signing_key``
(itsdangerous, HMAC-SHA1 over a salted key) and time-limited by ``access.session_max_age_s``.
Who the person is, how they signed in and whether the session still counts live in the
``access_sessions`` row (:mod:`sovhub.access.session_store`), read on every request: sign-out
ends one session; a password change, losing staff rights or erasure end all of a person's, on
every replica at once. It is HttpOnly, SameSite=Lax, and Secure
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
from typing import TYPE_CHECKING, Any, Literal

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import HTTPConnection
from starlette.responses import Response

from .addresses import client_address
from .session_store import create_session, find_session, revoke_session

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

    `acr` is an eIDAS level ('low', 'substantial', 'high') or None for a password. A new session
    row is made each time and the browser's previous session, if any, is ended (no fixation); a
    fresh CSRF secret is drawn, so a token seen before sign-in is useless after it.
    """
    if acr is not None and acr not in ASSURANCE_LEVELS:
        raise ValueError(f"acr must be one of {ASSURANCE_LEVELS} or None, got {acr!r}")
    hub = _hub(request)
    settings = hub.settings
    previous = _cookie_token(request)
    if previous is not None:
        revoke_session(hub, previous, "replaced")
    token = create_session(hub, int(user_id), acr=acr, idp=idp, user_agent=request.headers.get("user-agent"),
                           address=client_address(request))
    user = SessionUser(
        user_id=int(user_id), acr=acr, idp=idp, csrf=secrets.token_urlsafe(24), issued_at=time.time()
    )
    value = session_serializer(settings.signing_key).dumps({"s": token, "c": user.csrf})
    set_cookie(request, response, settings.access.session_cookie, value, settings.access.session_max_age_s)
    request.scope.setdefault("state", {})["sovhub_session"] = user
    return user


def _cookie_payload(request: HTTPConnection) -> dict[str, Any] | None:
    settings = _hub(request).settings
    raw = request.cookies.get(settings.access.session_cookie)
    if not raw:
        return None
    try:
        data = session_serializer(settings.signing_key).loads(raw, max_age=settings.access.session_max_age_s)
    except BadSignature:
        # Covers tampering, a rotated secret_key and expiry (SignatureExpired is a subclass).
        return None
    if not isinstance(data, dict) or not isinstance(data.get("s"), str) or not isinstance(data.get("c"), str):
        return None  # also a cookie of the stateless format before server-side sessions
    return data


def _cookie_token(request: HTTPConnection) -> str | None:
    data = _cookie_payload(request)
    return data["s"] if data is not None else None


def current_user(request: HTTPConnection) -> SessionUser | None:
    """The signed-in person, or None (no cookie, bad signature, expired, revoked, person gone).

    One primary-key read of the session row per request (cached for the request only), so a
    session ended on any replica is refused here from the next request on.
    """
    cached = request.scope.get("state", {}).get("sovhub_session")
    if isinstance(cached, SessionUser):
        return cached
    data = _cookie_payload(request)
    if data is None:
        return None
    session = find_session(_hub(request), data["s"])
    if session is None:
        return None
    user = SessionUser(
        user_id=session.user_id,
        acr=session.acr if session.acr in ASSURANCE_LEVELS else None,
        idp=session.idp,
        csrf=data["c"],
        issued_at=session.created_at.timestamp(),
    )
    request.scope.setdefault("state", {})["sovhub_session"] = user
    return user


def clear_session(request: HTTPConnection, response: Response) -> None:
    """Sign out: end this browser's session row, expire the cookie with the attributes it was set with."""
    settings = _hub(request).settings
    token = _cookie_token(request)
    if token is not None:
        revoke_session(_hub(request), token, "signed_out")
    response.delete_cookie(
        settings.access.session_cookie, path="/", httponly=True, samesite="lax", secure=is_secure_request(request)
    )
    request.scope.setdefault("state", {}).pop("sovhub_session", None)
