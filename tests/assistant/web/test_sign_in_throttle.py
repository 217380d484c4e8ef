"""The sign-in throttle attacked over HTTP: concurrent guesses, one attacker behind a shared proxy,
guesses spread over addresses, a spray over accounts, a forged X-Forwarded-For."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sovhub.assistant.people import create_user
from sovhub.settings import Settings
from tests.conftest import make_settings

from .conftest import _CSRF, PASSWORD, Web

PROXY = ("10.0.0.1", 40000)  # the reverse proxy every browser comes through


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return make_settings(
        data_dir, safety={"enabled": False}, embeddings_enabled=False,
        access={"trusted_proxies": ["10.0.0.0/24"], "login_max_failures": 3, "login_max_failures_per_account": 6,
                "login_max_failures_per_address": 10},
    )


def _browser(web: Web, address: str | None = None) -> tuple[TestClient, str]:
    """A browser behind the proxy (X-Forwarded-For `address`), with its sign-in form token."""
    headers = {"x-forwarded-for": address} if address else {}
    client = TestClient(web.client.app, base_url="http://testserver", client=PROXY, headers=headers)
    found = _CSRF.search(client.get("/login").text)
    assert found
    return client, found.group(1)


def _try(client: TestClient, token: str, email: str, password: str) -> int:
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token},
                       follow_redirects=False).status_code


def test_concurrent_guesses_beyond_the_limit_are_refused(web: Web) -> None:
    client, token = _browser(web, "203.0.113.5")
    with ThreadPoolExecutor(max_workers=12) as pool:
        codes = list(pool.map(lambda _: _try(client, token, web.email, "wrong guess!"), range(12)))
    # Counted before checking: three guesses were checked, all the others refused unchecked.
    assert sorted(codes) == [401] * 3 + [429] * 9
    assert _try(client, token, web.email, PASSWORD) == 429  # even the right password, from this address


def test_an_attacker_behind_the_proxy_does_not_lock_out_other_people(web: Web) -> None:
    create_user(web.hub, "bea@example.org", PASSWORD)
    attacker, a_token = _browser(web, "203.0.113.5")
    for _ in range(20):
        assert _try(attacker, a_token, web.email, "wrong guess!") in (401, 429)
    assert _try(attacker, a_token, web.email, "wrong guess!") == 429
    # Someone else at the same proxy, another account: unaffected.
    colleague, c_token = _browser(web, "198.51.100.7")
    assert _try(colleague, c_token, "bea@example.org", PASSWORD) == 303
    # The same attacker's address, another account: unaffected too (refused guesses did not count).
    assert _try(attacker, a_token, "bea@example.org", PASSWORD) == 303
    # The account's owner from their own address: still gets in (the pair, not the account, is locked).
    owner, o_token = _browser(web, "192.0.2.44")
    assert _try(owner, o_token, web.email, PASSWORD) == 303


def test_guesses_spread_over_addresses_lock_the_account(web: Web) -> None:
    for n in range(6):
        client, token = _browser(web, f"203.0.113.{n + 1}")
        assert _try(client, token, web.email, "wrong guess!") == 401
    fresh, token = _browser(web, "203.0.113.99")
    assert _try(fresh, token, web.email, "wrong guess!") == 429


def test_a_spray_over_accounts_locks_the_address(web: Web) -> None:
    sprayer, token = _browser(web, "203.0.113.5")
    for n in range(10):
        assert _try(sprayer, token, f"person{n}@example.org", "Summer2026!") == 401
    assert _try(sprayer, token, "person99@example.org", "Summer2026!") == 429
    other, o_token = _browser(web, "198.51.100.7")
    assert _try(other, o_token, "person99@example.org", "Summer2026!") == 401


def test_a_forged_forwarded_for_from_outside_the_proxy_is_ignored(web: Web) -> None:
    outsider = TestClient(web.client.app, base_url="http://testserver", client=("203.0.113.5", 1234))
    found = _CSRF.search(outsider.get("/login").text)
    assert found
    codes = [outsider.post("/login", headers={"x-forwarded-for": f"192.0.2.{n}"},
                           data={"email": web.email, "password": "wrong guess!", "csrf_token": found.group(1)},
                           follow_redirects=False).status_code for n in range(5)]
    assert codes == [401, 401, 401, 429, 429]


def test_right_passwords_are_never_counted(web: Web) -> None:
    client, token = _browser(web, "203.0.113.5")
    for _ in range(12):  # more than every limit: each success gives its guess back
        assert _try(client, token, web.email, PASSWORD) == 303
        client.cookies.delete(web.hub.settings.access.session_cookie)
