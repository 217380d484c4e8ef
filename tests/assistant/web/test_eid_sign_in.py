"""National eID on the sign-in page: one button per identity provider, through to the chat.

The end-to-end test drives the REAL OpenID provider the access tests use (npm `oidc-provider`
on loopback, tests/access/oidc): sign-in page button -> provider -> callback -> chat page.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from sovhub.access.tables import Identity
from sovhub.assistant.people import create_user
from sovhub.assistant.web.auth import sign_in_options
from sovhub.hub import build_hub
from tests.access.oidc_provider import CLIENT_ID, OidcProvider, provider_missing
from tests.conftest import add_fake_backend, make_settings, need_service
from tests.fakes import FakePlugin

from .conftest import PASSWORD, Web

HUB = "http://testserver"
_BUTTON = re.compile(r'<a class="button" href="([^"]+)" data-idp="([^"]+)">([^<]+)</a>')
# Rendering the page never contacts a provider: an unreachable issuer is fine for these tests.
OFFLINE_IDPS = {
    "diia": {"issuer": "https://id.example.gov.ua", "client_id": "hub", "display_name": "Diia <ID>"},
    "bank id": {"issuer": "https://bankid.example", "client_id": "hub"},
}


@contextmanager
def web_app(data_dir: Path, idps: dict[str, Any]) -> Iterator[Web]:
    """The real app with these identity providers, a fake `echo` model and one local account."""
    from sovhub.app import create_app

    settings = make_settings(data_dir, safety={"enabled": False}, embeddings_enabled=False,
                             access={"idps": idps, "login_max_failures_per_address": 50})
    hub = build_hub(settings)
    hub.pm.register(FakePlugin(), name="tests.fake")
    add_fake_backend(hub, "fake1", ["echo"])
    user_id = create_user(hub, "ada@example.org", PASSWORD, display_name="Ada")
    try:
        with TestClient(create_app(hub), base_url=HUB) as client:
            yield Web(client, hub, user_id, "ada@example.org")
    finally:
        hub.close()


def buttons(page: str) -> list[tuple[str, str, str]]:
    """(href, provider name, label) of each eID button, HTML entities decoded."""
    return [(html.unescape(h), html.unescape(n), html.unescape(t)) for h, n, t in _BUTTON.findall(page)]


def test_no_button_without_identity_providers(data_dir: Path) -> None:
    with web_app(data_dir, {}) as web:
        page = web.client.get("/login")
    assert page.status_code == 200 and 'id="eid-sign-in"' not in page.text
    assert buttons(page.text) == [] and "/auth/oidc/" not in page.text
    assert 'name="password"' in page.text  # the local sign-in is still there


def test_one_button_per_identity_provider_with_its_name(data_dir: Path) -> None:
    with web_app(data_dir, OFFLINE_IDPS) as web:
        page = web.client.get("/login")
        assert page.status_code == 200
        assert buttons(page.text) == [
            ("/auth/oidc/diia/login", "diia", "Sign in with Diia <ID>"),
            ("/auth/oidc/bank%20id/login", "bank id", "Sign in with bank id"),  # no display name: its key
        ]
        assert "Diia &lt;ID&gt;" in page.text  # the name is escaped, never markup
        assert "Or sign in with an email address and password" in page.text
        ukrainian = web.client.get("/login", headers={"accept-language": "uk"}).text
        assert [label for _, _, label in buttons(ukrainian)] == ["Увійти через Diia <ID>", "Увійти через bank id"]
        assert "Або увійдіть з адресою електронної пошти та паролем" in ukrainian
        japanese = web.client.get("/login", headers={"accept-language": "ja"}).text
        assert buttons(japanese)[0][2] == "Diia <ID>でログイン"


def test_buttons_return_to_the_page_that_asked_for_sign_in(data_dir: Path) -> None:
    with web_app(data_dir, OFFLINE_IDPS) as web:
        asked = web.client.get("/me", follow_redirects=False)
        assert asked.status_code == 303
        page = web.client.get(asked.headers["location"])
        assert buttons(page.text)[0][0] == "/auth/oidc/diia/login?return_to=%2Fme"
        # An off-site `next` is dropped before it reaches a button (no open redirect through eID).
        evil = web.client.get("/login?next=//evil.example/x")
        assert buttons(evil.text)[0][0] == "/auth/oidc/diia/login"
        assert sign_in_options(web.hub, "/c/abc?x=1&y=2")[0].url == "/auth/oidc/diia/login?return_to=%2Fc%2Fabc%3Fx%3D1%26y%3D2"


def test_buttons_stay_after_a_failed_password_sign_in(data_dir: Path) -> None:
    with web_app(data_dir, OFFLINE_IDPS) as web:
        token = web.csrf("/login")
        wrong = web.client.post("/login", data={"email": web.email, "password": "wrong-wrong",
                                                "csrf_token": token, "next": "/me"})
        assert wrong.status_code == 401
        assert [href for href, _, _ in buttons(wrong.text)] == [
            "/auth/oidc/diia/login?return_to=%2Fme", "/auth/oidc/bank%20id/login?return_to=%2Fme"]
        expired = web.client.post("/login", data={"email": web.email, "password": PASSWORD, "csrf_token": "x"})
        assert expired.status_code == 403 and len(buttons(expired.text)) == 2


# --- against the real provider ---


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[OidcProvider]:
    missing = provider_missing()
    if missing:
        need_service(missing)
    idp = OidcProvider(tmp_path, [f"{HUB}/auth/oidc/test/callback"])
    idp.start()
    yield idp
    idp.stop()


def _through_provider(url: str, idp: OidcProvider) -> str:
    """What the person's browser does at the provider (its test login is automatic); the hub path it returns to."""
    with httpx.Client() as browser:
        for _ in range(10):
            response = browser.get(url, follow_redirects=False)
            assert response.status_code in (302, 303), response.text
            url = urljoin(url, response.headers["location"])
            if url.startswith(HUB):
                return url[len(HUB):]
    raise AssertionError("the provider never sent the person back to the hub")


def test_the_button_starts_the_code_flow_with_pkce(data_dir: Path, provider: OidcProvider) -> None:
    with web_app(data_dir, {"test": provider.idp_settings(display_name="TestID")}) as web:
        ((href, _, label),) = buttons(web.client.get("/login").text)
        assert label == "Sign in with TestID"
        start = web.client.get(href, follow_redirects=False)
    assert start.status_code == 303
    location = start.headers["location"]
    assert location.startswith(provider.issuer + "/auth?")
    query = parse_qs(urlsplit(location).query)
    assert query["response_type"] == ["code"] and query["client_id"] == [CLIENT_ID]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) >= 43
    assert len(query["state"][0]) >= 32 and len(query["nonce"][0]) >= 32
    assert query["redirect_uri"] == [f"{HUB}/auth/oidc/test/callback"]


def test_sign_in_page_to_provider_and_back_into_the_chat(data_dir: Path, provider: OidcProvider) -> None:
    with web_app(data_dir, {"test": provider.idp_settings(display_name="TestID")}) as web:
        asked = web.client.get("/", follow_redirects=False)  # the chat wants a signed-in person
        assert asked.status_code == 303 and asked.headers["location"].startswith("/login")
        ((href, _, _),) = buttons(web.client.get(asked.headers["location"]).text)
        provider.next_login("alice", "substantial")
        start = web.client.get(href, follow_redirects=False)
        callback = _through_provider(start.headers["location"], provider)
        assert callback.startswith("/auth/oidc/test/callback?") and "code=" in callback
        back = web.client.get(callback, follow_redirects=False)
        assert back.status_code == 303 and back.headers["location"] == "/"
        chat = web.client.get("/", follow_redirects=False)
        assert chat.status_code == 200
        assert 'id="composer"' in chat.text and "Sign out" in chat.text
        assert web.client.get("/login", follow_redirects=False).status_code == 303  # already signed in
        with web.hub.db.session() as s:
            person = s.query(Identity).one()
        assert (person.idp, person.subject, person.level) == ("test", "alice", "substantial")
        assert person.user_id != web.user_id  # a new account, not the local one
        # The eID account can chat like any other.
        answer = web.ask("hello from eID")
        assert "hello" in answer and "from" in answer
