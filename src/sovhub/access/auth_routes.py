"""National eID sign-in routes: /auth/oidc/{idp}/login, /auth/oidc/{idp}/callback, /auth/verify/{token}.

Replay protection has three locks: the `state` must match the one in this browser's signed,
short-lived cookie (login CSRF); its transaction row is consumed exactly once, with an
UPDATE ... WHERE consumed_at IS NULL that only one replica can win; and the provider refuses
a reused code. Every callback counts against the client address in the login throttle before
it is checked; one that signs in gives its count back.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from itsdangerous import BadSignature
from sqlalchemy import delete, select, update

from ..api.deps import HubDep
from ..errors import AuthenticationFailed, InvalidRequest
from ..hub import Hub
from ..store.base import utcnow
from ..store.tables import User
from ..users import normalize_email
from .addresses import client_address
from .oidc import EidIdentity, OidcClients, new_pkce
from .sessions import current_user, issue_session, session_serializer, set_cookie
from .tables import Identity, OidcTransaction
from .throttle import LoginThrottle, address_keys
from .verification import attach_representative, verification_status

router = APIRouter(tags=["auth"], include_in_schema=False)

__all__ = ["link_identity", "router"]

STATE_COOKIE = "sovhub_oidc"
_STATE_SALT = "sovhub.oidc-state.v1"


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _local_path(value: str | None) -> str:
    # Only same-site paths: "//evil.example" and "/\\evil" would leave the site (open redirect).
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _redirect_uri(request: Request, hub: Hub, idp: str) -> str:
    base = (hub.settings.access.public_url or str(request.base_url)).rstrip("/")
    return f"{base}/auth/oidc/{idp}/callback"


async def start_login(
    request: Request, hub: Hub, idp: str, *, level: str | None, purpose: str | None, return_to: str | None
) -> RedirectResponse:
    client = hub.services.get(OidcClients).get(idp)
    await hub.services.get(LoginThrottle).check(address_keys(hub, client_address(request)))
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier, challenge = new_pkce()
    timeout = hub.settings.access.oidc_login_timeout_s

    def save() -> None:
        with hub.db.session() as s:
            # Housekeeping on the sign-in path (not the API hot path): forget stale attempts.
            s.execute(delete(OidcTransaction).where(OidcTransaction.created_at < utcnow() - timedelta(days=1)))
            s.add(OidcTransaction(state_hash=_sha(state), idp=idp, nonce=nonce, code_verifier=verifier,
                                  purpose=purpose, return_to=_local_path(return_to)))

    await anyio.to_thread.run_sync(save)
    url = await client.authorization_url(
        redirect_uri=_redirect_uri(request, hub, idp), state=state, nonce=nonce, code_challenge=challenge,
        level=level,
    )
    response = RedirectResponse(url, status_code=303)
    cookie = session_serializer(hub.settings.signing_key, _STATE_SALT).dumps(state)
    set_cookie(request, response, STATE_COOKIE, cookie, timeout)
    return response


@router.get("/auth/oidc/{idp}/login")
async def oidc_login(
    idp: str, request: Request, hub: HubDep,
    return_to: str | None = Query(None), level: str | None = Query(None, pattern="^(low|substantial|high)$"),
) -> RedirectResponse:
    return await start_login(request, hub, idp, level=level, purpose=None, return_to=return_to)


def _consume(hub: Hub, idp: str, state: str) -> OidcTransaction | None:
    timeout = timedelta(seconds=hub.settings.access.oidc_login_timeout_s)
    with hub.db.session() as s:
        won = s.execute(  # type: ignore[attr-defined]
            update(OidcTransaction)
            .where(OidcTransaction.state_hash == _sha(state), OidcTransaction.idp == idp,
                   OidcTransaction.consumed_at.is_(None), OidcTransaction.created_at > utcnow() - timeout)
            .values(consumed_at=utcnow())
        ).rowcount
        if won != 1:
            return None
        return s.get(OidcTransaction, _sha(state))


def link_identity(hub: Hub, eid: EidIdentity, session_user_id: int | None) -> tuple[int, int]:
    """(identity id, user id): the known person, else linked to the signed-in user, else a new user."""
    with hub.db.session() as s:
        identity = s.scalar(select(Identity).where(Identity.idp == eid.idp, Identity.subject == eid.subject))
        if identity is None:
            identity = Identity(idp=eid.idp, subject=eid.subject)
            s.add(identity)
        identity.level, identity.given_name, identity.family_name = eid.level, eid.given_name, eid.family_name
        identity.birthdate, identity.person_id, identity.last_login_at = eid.birthdate, eid.person_id, utcnow()
        if identity.user_id is None:
            if session_user_id is not None:
                identity.user_id = session_user_id
            else:
                # eID asserts no e-mail we could trust for account linking: a placeholder keeps users.email unique.
                placeholder = f"eid-{_sha(eid.idp + ':' + eid.subject)[:24]}@{eid.idp}.eid.invalid"
                user = User(email=normalize_email(placeholder), display_name=eid.full_name or None)
                s.add(user)
                s.flush()
                identity.user_id = user.id
        s.flush()
        return identity.id, int(identity.user_id)


@router.get("/auth/oidc/{idp}/callback", response_model=None)
async def oidc_callback(idp: str, request: Request, hub: HubDep) -> Response:
    throttle = hub.services.get(LoginThrottle)
    keys = address_keys(hub, client_address(request))
    await throttle.attempt(keys)  # counted before anything is checked; a success gives it back
    response = await _callback(idp, request, hub)
    await throttle.succeed(keys)
    response.delete_cookie(STATE_COOKIE, path="/", httponly=True, samesite="lax")
    return response


async def _callback(idp: str, request: Request, hub: Hub) -> Response:
    client = hub.services.get(OidcClients).get(idp)
    params = request.query_params
    if params.get("error"):
        raise AuthenticationFailed(
            f"eID sign-in did not complete: {params.get('error')} {params.get('error_description') or ''}".strip(),
            code="oidc_error",
        )
    state, code = params.get("state") or "", params.get("code") or ""
    if not state or not code:
        raise InvalidRequest("the callback needs `code` and `state`", code="oidc_invalid_callback")
    try:
        cookie_state = session_serializer(hub.settings.signing_key, _STATE_SALT).loads(
            request.cookies.get(STATE_COOKIE, ""), max_age=hub.settings.access.oidc_login_timeout_s
        )
    except BadSignature:
        cookie_state = None
    if not isinstance(cookie_state, str) or not hmac.compare_digest(cookie_state, state):
        raise AuthenticationFailed("eID sign-in refused: state does not match this browser's sign-in",
                                   code="oidc_state_mismatch")
    txn = await anyio.to_thread.run_sync(_consume, hub, idp, state)
    if txn is None:
        raise AuthenticationFailed("eID sign-in refused: this sign-in is unknown, expired or was already used",
                                   code="oidc_replay")
    redirect_uri = _redirect_uri(request, hub, idp)
    tokens = await client.exchange(code=code, redirect_uri=redirect_uri, code_verifier=txn.code_verifier)
    eid = await client.validate_id_token(str(tokens["id_token"]), nonce=txn.nonce)
    signed_in = current_user(request)
    identity_id, user_id = await anyio.to_thread.run_sync(
        link_identity, hub, eid, signed_in.user_id if signed_in else None
    )
    hub.emit("user.signed_in", actor=f"user:{user_id}", subject=f"user:{user_id}", method="oidc", idp=idp,
             level=eid.level)
    body: dict[str, Any] | None = None
    if txn.purpose and txn.purpose.startswith("verify:"):
        verification = await anyio.to_thread.run_sync(attach_representative, hub, txn.purpose[7:], identity_id)
        body = await anyio.to_thread.run_sync(verification_status, hub, verification.org_id)
    response: Response
    if body is not None and txn.return_to in (None, "/"):
        response = JSONResponse(body)
    else:
        response = RedirectResponse(txn.return_to or "/", status_code=303)
    issue_session(response, user_id, eid.level, request=request, idp=idp)
    return response


@router.get("/auth/verify/{token}")
async def verify_link(
    token: str, request: Request, hub: HubDep, idp: str | None = Query(None), return_to: str | None = Query(None)
) -> RedirectResponse:
    """The legal representative's link: sign in with eID at level high for the verification."""
    idps = sorted(hub.settings.access.idps)
    if idp is None:
        if len(idps) != 1:
            raise InvalidRequest(
                f"choose an identity provider: add ?idp=NAME (one of: {', '.join(idps) or 'none configured'})",
                param="idp",
            )
        idp = idps[0]
    return await start_login(request, hub, idp, level="high", purpose=f"verify:{token}", return_to=return_to)
