"""Server-side sessions over the real web app: sign-out, password change, lost staff rights and
erasure end sessions at once, on every replica; ids are not reused after erasure."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from sovhub.access.session_store import token_hash
from sovhub.access.sessions import session_serializer
from sovhub.access.tables import WebSession
from sovhub.app import create_app
from sovhub.assistant.people import create_user, set_password, set_staff
from sovhub.hub import build_hub
from sovhub.sovereignty.rights import erase_user
from tests.fakes import FakePlugin

from .conftest import PASSWORD, Web


def _signed_in(client: TestClient) -> bool:
    return client.get("/", follow_redirects=False).status_code == 200


def _browser(web: Web, cookie: str) -> TestClient:
    other = TestClient(web.client.app, base_url="http://testserver")
    other.cookies.set(web.hub.settings.access.session_cookie, cookie)
    return other


def _cookie(web: Web) -> str:
    return str(web.client.cookies[web.hub.settings.access.session_cookie])


def test_sign_out_ends_the_session_not_just_the_cookie(signed_in: Web) -> None:
    kept = _cookie(signed_in)  # what a thief (or a shared computer) still holds after sign-out
    signed_in.client.post("/logout", data={"csrf_token": signed_in.csrf()})
    assert not _signed_in(_browser(signed_in, kept))


def test_the_database_holds_only_the_tokens_hash(signed_in: Web) -> None:
    token = session_serializer(signed_in.hub.settings.signing_key).loads(_cookie(signed_in))["s"]
    with signed_in.hub.db.session() as s:
        rows = s.scalars(select(WebSession)).all()
    assert [r.id for r in rows] == [token_hash(token)] and token not in {r.id for r in rows}
    assert rows[0].user_id == signed_in.user_id and rows[0].revoked_at is None
    assert rows[0].user_agent == "testclient" and rows[0].address == "testclient"


def test_a_password_change_ends_every_session_of_the_person(web: Web) -> None:
    web.sign_in()
    first = _cookie(web)
    second = TestClient(web.client.app, base_url="http://testserver")
    Web(second, web.hub, web.user_id, web.email).sign_in()
    other = create_user(web.hub, "bea@example.org", PASSWORD)
    bea = TestClient(web.client.app, base_url="http://testserver")
    Web(bea, web.hub, other, "bea@example.org").sign_in()

    assert set_password(web.hub, web.user_id, "a brand new password") == 2
    assert not _signed_in(_browser(web, first)) and not _signed_in(second)
    assert _signed_in(bea)  # someone else's sessions are untouched
    web.client.cookies.clear()
    web.sign_in(password="a brand new password")
    assert _signed_in(web.client)


def test_losing_staff_rights_ends_every_session(web: Web) -> None:
    set_staff(web.hub, web.user_id, True)
    web.sign_in()
    assert web.client.get("/admin").status_code == 200
    kept = _cookie(web)
    assert set_staff(web.hub, web.user_id, False) == 1
    assert not _signed_in(_browser(web, kept))
    assert set_staff(web.hub, web.user_id, False) == 0  # nothing left to end


def test_a_session_ended_on_one_replica_is_refused_on_another(signed_in: Web) -> None:
    replica = build_hub(signed_in.hub.settings)  # a second process over the same database
    replica.pm.register(FakePlugin(), name="tests.fake")
    try:
        with TestClient(create_app(replica), base_url="http://testserver") as other:
            other.cookies.set(replica.settings.access.session_cookie, _cookie(signed_in))
            assert _signed_in(other)
            signed_in.client.post("/logout", data={"csrf_token": signed_in.csrf()})
            assert not _signed_in(other)  # no cache to wait out
    finally:
        replica.close()


def test_erasure_ends_sessions_and_the_id_is_never_given_again(web: Web) -> None:
    web.sign_in()
    kept = _cookie(web)
    old_id = web.user_id
    listed = web.client.get("/hub/v1/me/export").json()["web_sessions"]
    assert [(x["method"], x["user_agent"], x["revoked_at"]) for x in listed] == [("password", "testclient", None)]
    assert "id" not in listed[0] and "token" not in listed[0]
    erase_user(web.hub, old_id, actor="cli")
    with web.hub.db.session() as s:
        assert s.scalars(select(WebSession).where(WebSession.user_id == old_id)).all() == []
    newcomer = create_user(web.hub, "newcomer@example.org", PASSWORD)
    assert newcomer != old_id  # SQLite without AUTOINCREMENT hands the newest erased id out again
    browser = _browser(web, kept)
    assert not _signed_in(browser)
    assert browser.get("/hub/v1/me/export").status_code == 401


def test_sign_in_accepts_another_case_or_width_of_the_address(web: Web) -> None:
    web.sign_in(email="ＡＤＡ@Example.ORG")
    assert _signed_in(web.client)


def test_signing_in_again_replaces_the_browsers_previous_session(signed_in: Web) -> None:
    before = _cookie(signed_in)
    signed_in.sign_in()
    assert _cookie(signed_in) != before
    assert not _signed_in(_browser(signed_in, before))
    assert _signed_in(signed_in.client)
