"""Session cookies (flags, tampering, expiry), the CSRF helper and the login throttle."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from sqlalchemy import select

from sovhub.access.csrf import CSRF_COOKIE, csrf_token, require_csrf
from sovhub.access.sessions import clear_session, current_user, issue_session, session_serializer
from sovhub.access.tables import WebSession
from sovhub.access.throttle import LoginThrottle, ThrottleKey
from sovhub.errors import RateLimited
from sovhub.store.tables import User

from .conftest import redis_url


def _add_routes(app: Any) -> None:
    async def login(request: Request, user_id: int, acr: str | None = None) -> JSONResponse:
        with request.app.state.hub.db.session() as db:
            if db.get(User, user_id) is None:
                db.add(User(id=user_id, email=f"user{user_id}@example.org"))
                db.commit()
        response = JSONResponse({"ok": True})
        issue_session(response, user_id, acr, request=request)
        return response

    async def me(request: Request) -> dict[str, Any]:
        user = current_user(request)
        return {"user": None if user is None else {"id": user.user_id, "acr": user.acr,
                                                     "high": user.assurance_at_least("high")}}

    async def form(request: Request) -> JSONResponse:
        response = JSONResponse({})
        response.body = JSONResponse({"csrf": csrf_token(request, response)}).body
        response.headers["content-length"] = str(len(response.body))
        return response

    async def post(request: Request) -> dict[str, bool]:
        return {"saved": True}

    async def logout(request: Request) -> JSONResponse:
        response = JSONResponse({})
        clear_session(request, response)
        return response

    app.add_api_route("/t/login", login, methods=["POST"])
    app.add_api_route("/t/me", me)
    app.add_api_route("/t/form", form)
    app.add_api_route("/t/form", post, methods=["POST"], dependencies=[Depends(require_csrf)])
    app.add_api_route("/t/logout", logout, methods=["POST"])


@pytest.fixture
def web(make_app: Any) -> Any:
    def factory(**access: Any) -> tuple[Any, TestClient]:
        hub, client = make_app(**access)
        _add_routes(client.app)
        return hub, client

    return factory


def _set_cookie(r: Any, name: str) -> str:
    return str(next(h for h in r.headers.get_list("set-cookie") if h.startswith(name + "=")))


def test_session_cookie_flags_plain_http(web: Any) -> None:
    _, client = web()
    r = client.post("/t/login", params={"user_id": 7, "acr": "high"})
    cookie = _set_cookie(r, "sovhub_session").lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    assert "secure" not in cookie
    me = client.get("/t/me").json()["user"]
    assert me == {"id": 7, "acr": "high", "high": True}


def test_secure_over_tls_and_forwarded_proto_only_when_trusted(web: Any) -> None:
    _, client = web()
    tls = TestClient(client.app, base_url="https://testserver")
    assert "secure" in _set_cookie(tls.post("/t/login", params={"user_id": 1}), "sovhub_session").lower()
    spoofed = client.post("/t/login", params={"user_id": 1}, headers={"x-forwarded-proto": "https"})
    assert "secure" not in _set_cookie(spoofed, "sovhub_session").lower()

    _, trusting = web(trust_forwarded_proto=True)
    proxied = trusting.post("/t/login", params={"user_id": 1}, headers={"x-forwarded-proto": "https"})
    assert "secure" in _set_cookie(proxied, "sovhub_session").lower()


def test_tampered_expired_and_foreign_cookies_are_ignored(web: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    hub, client = web()
    client.post("/t/login", params={"user_id": 5})
    good = client.cookies["sovhub_session"]
    assert client.get("/t/me").json()["user"]["id"] == 5
    client.cookies.clear()
    client.cookies.set("sovhub_session", good[:-2] + ("AA" if not good.endswith("AA") else "BB"))
    assert client.get("/t/me").json()["user"] is None
    # A cookie signed with another key (another deployment, or a guessed secret).
    other = session_serializer("not-the-hub-secret").dumps({"u": 1, "a": "high", "i": None, "c": "x", "t": 0})
    client.cookies.clear()
    client.cookies.set("sovhub_session", other)
    assert client.get("/t/me").json()["user"] is None
    old = session_serializer(hub.settings.signing_key)
    import itsdangerous.timed

    nine_hours_ago = int(time.time()) - 9 * 3600
    monkeypatch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp", lambda self: nine_hours_ago)
    expired = old.dumps({"u": 5, "a": None, "i": None, "c": "x", "t": 0})
    monkeypatch.undo()
    client.cookies.clear()
    client.cookies.set("sovhub_session", expired)
    assert client.get("/t/me").json()["user"] is None


def test_logout_expires_cookie(web: Any) -> None:
    _, client = web()
    client.post("/t/login", params={"user_id": 5})
    r = client.post("/t/logout")
    assert 'sovhub_session=""' in _set_cookie(r, "sovhub_session") or "max-age=0" in r.headers["set-cookie"].lower()
    assert client.get("/t/me").json()["user"] is None


def test_issue_session_refuses_unknown_level(web: Any) -> None:
    _, client = web()
    lenient = TestClient(client.app, raise_server_exceptions=False)
    r = lenient.post("/t/login", params={"user_id": 1, "acr": "super"})
    assert r.status_code == 500 and "set-cookie" not in r.headers


def test_csrf_before_and_after_sign_in(web: Any) -> None:
    _, client = web()
    r = client.post("/t/form", data={"x": "1"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
    page = client.get("/t/form")
    anon_token = page.json()["csrf"]
    assert "httponly" in _set_cookie(page, CSRF_COOKIE).lower()
    assert client.post("/t/form", data={"csrf_token": "wrong"}).status_code == 403
    assert client.post("/t/form", data={"csrf_token": anon_token}).json() == {"saved": True}
    assert client.post("/t/form", headers={"x-csrf-token": anon_token}).status_code == 200

    client.post("/t/login", params={"user_id": 3})
    session_token = client.get("/t/form").json()["csrf"]
    assert session_token != anon_token
    assert client.post("/t/form", data={"csrf_token": anon_token}).status_code == 403  # rotated at sign-in
    assert client.post("/t/form", data={"csrf_token": session_token}).status_code == 200
    # Another browser (no cookies) cannot use a stolen token.
    fresh = TestClient(client.app)
    assert fresh.post("/t/form", data={"csrf_token": session_token}).status_code == 403


@pytest.fixture(params=["memory", "redis"])
def throttle(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return LoginThrottle(window_s=60, lockout_s=120)
    import uuid

    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url(), decode_responses=True)
    return LoginThrottle(window_s=60, lockout_s=120, redis=client,
                         prefix=f"sovhub-test:{uuid.uuid4().hex[:8]}:")


K = [ThrottleKey("pair:a", 3, forget_on_success=True), ThrottleKey("user:a", 5)]


async def test_throttle_counts_before_checking_and_locks(throttle: LoginThrottle) -> None:
    for _ in range(3):
        await throttle.attempt(K)
    with pytest.raises(RateLimited) as caught:
        await throttle.attempt(K)  # the fourth guess is refused without being checked
    assert caught.value.code == "login_throttled"
    assert 100 <= caught.value.retry_after <= 120 and caught.value.headers["retry-after"]
    with pytest.raises(RateLimited):
        await throttle.check(K)
    await throttle.attempt([ThrottleKey("user:b", 3)])  # other keys are unaffected
    await throttle.succeed(K)
    with pytest.raises(RateLimited):
        await throttle.attempt(K)  # a lockout in force stays
    if throttle.redis is not None:
        await throttle.redis.aclose()


async def test_concurrent_attempts_cannot_all_pass(throttle: LoginThrottle) -> None:
    results = await asyncio.gather(*[throttle.attempt(K) for _ in range(20)], return_exceptions=True)
    assert sum(r is None for r in results) == 3
    assert all(isinstance(r, RateLimited) for r in results if r is not None)
    if throttle.redis is not None:
        await throttle.redis.aclose()


async def test_a_success_gives_its_guess_back(throttle: LoginThrottle) -> None:
    for _ in range(2):
        await throttle.attempt(K)
    await throttle.succeed(K)  # pair forgotten; account 2 - 1 = 1
    for _ in range(3):
        await throttle.attempt(K)  # without the forgetting, the pair would refuse the second
    await throttle.succeed(K)  # account 4 - 1 = 3
    for _ in range(2):
        await throttle.attempt(K)  # account 5: used up
    with pytest.raises(RateLimited):
        await throttle.attempt(K)
    if throttle.redis is not None:
        await throttle.redis.aclose()


def test_login_throttle_is_shared_per_hub(hub: Any) -> None:
    assert hub.services.get(LoginThrottle) is hub.services.get(LoginThrottle)
    assert hub.services.get(LoginThrottle).lockout_s == hub.settings.access.login_lockout_s


def test_cookie_signed_with_the_old_public_default_is_refused(web: Any) -> None:
    """The attack of a default install: sign {u: 1} with the formerly built-in secret."""
    hub, client = web()
    client.post("/t/login", params={"user_id": 1})
    client.cookies.clear()
    assert hub.settings.signing_key != "dev-insecure-secret"
    forged = session_serializer("dev-insecure-secret").dumps({"u": 1, "a": "high", "i": None, "c": "x", "t": 0})
    client.cookies.set("sovhub_session", forged)
    assert client.get("/t/me").json()["user"] is None


def test_session_of_a_deleted_account_or_the_old_cookie_format_is_refused(web: Any) -> None:
    hub, client = web()
    client.post("/t/login", params={"user_id": 9})
    assert client.get("/t/me").json()["user"]["id"] == 9
    with hub.db.session() as db:
        db.delete(db.get(User, 9))
        db.commit()
    assert client.get("/t/me").json()["user"] is None
    # A well-signed cookie of the stateless format (no session token) opens nothing.
    client.post("/t/login", params={"user_id": 10})
    stateless = session_serializer(hub.settings.signing_key).dumps({"u": 10, "a": None, "i": None, "c": "x", "t": 0})
    client.cookies.clear()
    client.cookies.set("sovhub_session", stateless)
    assert client.get("/t/me").json()["user"] is None


def test_logout_revokes_the_session_row(web: Any) -> None:
    hub, client = web()
    client.post("/t/login", params={"user_id": 4, "acr": "substantial"})
    kept = client.cookies["sovhub_session"]
    with hub.db.session() as db:
        row = db.scalars(select(WebSession)).one()
        assert row.acr == "substantial" and row.revoked_at is None
    client.post("/t/logout")
    with hub.db.session() as db:
        row = db.scalars(select(WebSession)).one()
        assert row.revoked_at is not None and row.revoked_reason == "signed_out"
    client.cookies.set("sovhub_session", kept)
    assert client.get("/t/me").json()["user"] is None


def test_an_expired_session_row_is_refused_even_with_a_fresh_cookie(web: Any) -> None:
    from datetime import timedelta

    hub, client = web()
    client.post("/t/login", params={"user_id": 6})
    with hub.db.session() as db:
        row = db.scalars(select(WebSession)).one()
        row.expires_at = row.created_at - timedelta(seconds=1)
        db.commit()
    assert client.get("/t/me").json()["user"] is None


def test_hsts_only_when_the_public_url_is_https(web: Any) -> None:
    _, plain = web()
    assert "strict-transport-security" not in plain.get("/t/me").headers
    _, tls = web(public_url="https://hub.example.gov")
    header = tls.get("/t/me").headers.get("strict-transport-security", "")
    assert "max-age=31536000" in header
