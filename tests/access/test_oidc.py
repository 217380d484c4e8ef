"""National eID sign-in against a REAL OpenID provider (npm oidc-provider on loopback).

The provider runs tests/access/oidc/provider.mjs; the test holds its signing keys, so it can
rotate them and craft tokens (wrong audience, expired, wrongly signed) that only validation
stops.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from sovhub.access.oidc import OidcClients
from sovhub.access.tables import Identity
from sovhub.errors import AuthenticationFailed
from tests.conftest import need_service

from .conftest import bearer, org_with_key
from .oidc_provider import CLIENT_ID, OidcProvider, new_key, provider_missing

HUB = "http://testserver"


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[OidcProvider]:
    missing = provider_missing()
    if missing:
        need_service(missing)
    provider = OidcProvider(tmp_path, [f"{HUB}/auth/oidc/test/callback"])
    provider.start()
    yield provider
    provider.stop()


@pytest.fixture
def eid_app(make_app: Any, idp: OidcProvider) -> tuple[Any, Any]:
    return make_app(idps={"test": idp.idp_settings()}, jwks_min_refresh_s=0,
                    login_max_failures_per_address=50)  # type: ignore[no-any-return]


def browse_to_callback(client: Any, idp: OidcProvider, start: str, account: str = "alice", level: str = "high") -> str:
    """Follow the redirects a browser would, from the hub's login URL to its callback path."""
    idp.next_login(account, level)
    r = client.get(start, follow_redirects=False)
    assert r.status_code == 303, r.text
    url = str(r.headers["location"])
    assert url.startswith(idp.issuer + "/auth?")
    with httpx.Client() as browser:
        for _ in range(10):
            resp = browser.get(url, follow_redirects=False)
            assert resp.status_code in (302, 303), resp.text
            url = urljoin(url, resp.headers["location"])
            if url.startswith(HUB):
                return url[len(HUB):]
    raise AssertionError("the provider never redirected back to the hub")


def test_full_sign_in_with_pkce_state_nonce_and_acr(eid_app: Any, idp: OidcProvider) -> None:
    hub, client = eid_app
    start = client.get("/auth/oidc/test/login?return_to=/welcome", follow_redirects=False)
    query = parse_qs(urlsplit(start.headers["location"]).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) >= 43
    assert query["state"][0] and query["nonce"][0] and query["client_id"] == [CLIENT_ID]
    assert "httponly" in start.headers["set-cookie"].lower()

    callback = browse_to_callback(client, idp, "/auth/oidc/test/login?return_to=/welcome", level="substantial")
    assert "code=" in callback and "state=" in callback
    done = client.get(callback, follow_redirects=False)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/welcome"
    session = next(c for c in done.headers.get_list("set-cookie") if c.startswith("sovhub_session="))
    assert "httponly" in session.lower() and "samesite=lax" in session.lower()
    with hub.db.session() as s:
        person = s.query(Identity).one()
    assert (person.idp, person.subject, person.level) == ("test", "alice", "substantial")
    assert (person.given_name, person.family_name) == ("Olena", "Petrenko")
    assert "user.signed_in" in hub.pm.get_plugin("tests.events").names()

    # Signing in again maps to the same person and user.
    again = client.get(browse_to_callback(client, idp, "/auth/oidc/test/login"), follow_redirects=False)
    assert again.status_code == 303
    with hub.db.session() as s:
        assert s.query(Identity).count() == 1


def test_replayed_callback_and_reused_code_are_refused(eid_app: Any, idp: OidcProvider) -> None:
    _, client = eid_app
    callback = browse_to_callback(client, idp, "/auth/oidc/test/login")
    assert client.get(callback, follow_redirects=False).status_code == 303
    replay = client.get(callback, follow_redirects=False)
    assert replay.status_code == 401 and replay.json()["error"]["code"] in ("oidc_replay", "oidc_state_mismatch")

    # Same code with a fresh, valid state: our side accepts the state, the provider refuses the code.
    code = parse_qs(urlsplit(callback).query)["code"][0]
    fresh = browse_to_callback(client, idp, "/auth/oidc/test/login")
    state = parse_qs(urlsplit(fresh).query)["state"][0]
    reused = client.get(f"/auth/oidc/test/callback?code={code}&state={state}", follow_redirects=False)
    assert reused.status_code == 401 and reused.json()["error"]["code"] == "oidc_code_refused"


def test_state_from_another_browser_is_refused(eid_app: Any, idp: OidcProvider) -> None:
    hub, client = eid_app
    callback = browse_to_callback(client, idp, "/auth/oidc/test/login")
    from fastapi.testclient import TestClient

    attacker = TestClient(client.app)  # no state cookie: login CSRF
    r = attacker.get(callback, follow_redirects=False)
    assert r.status_code == 401 and r.json()["error"]["code"] == "oidc_state_mismatch"
    assert client.get("/auth/oidc/test/callback?state=x", follow_redirects=False).status_code == 400
    denied = client.get("/auth/oidc/test/callback?error=access_denied", follow_redirects=False)
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "oidc_error"
    assert client.get("/auth/oidc/nope/login", follow_redirects=False).status_code == 404


def _claims(idp: OidcProvider, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": idp.issuer, "aud": CLIENT_ID, "sub": "alice", "iat": now, "exp": now + 300, "nonce": "n1",
              "acr": "http://eidas.europa.eu/LoA/high", "given_name": "Olena", "family_name": "Petrenko"}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(idp: OidcProvider, claims: dict[str, Any], key: Any = None) -> str:
    key = key or idp.keys[0]
    return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)


def _validate(app: tuple[Any, Any], token: str, nonce: str = "n1") -> Any:
    """Validate in the app's event loop, where the hub's HTTP client lives."""
    hub, client = app

    async def run() -> Any:
        return await hub.services.get(OidcClients).get("test").validate_id_token(token, nonce=nonce)

    return client.portal.call(run)


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"aud": "someone-else"}, "aud"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "expired"),
        ({"iss": "http://127.0.0.1:1/"}, "iss"),
        ({"nonce": "other"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"aud": [CLIENT_ID, "another"], "azp": "another"}, "azp"),
    ],
)
def test_crafted_tokens_are_refused(eid_app: Any, idp: OidcProvider, over: dict[str, Any], reason: str) -> None:
    hub, client = eid_app
    token = _sign(idp, _claims(idp, **over))
    with pytest.raises(AuthenticationFailed, match=reason) as caught:
        _validate(eid_app, token)
    assert caught.value.code == "oidc_invalid_token"


def test_valid_crafted_token_passes_and_maps_acr(eid_app: Any, idp: OidcProvider) -> None:
    hub, _ = eid_app
    person = _validate(eid_app, _sign(idp, _claims(idp)))
    assert person.level == "high" and person.full_name == "Olena Petrenko"
    unknown = _validate(eid_app, _sign(idp, _claims(idp, acr="urn:something-else")))
    assert unknown.level is None


def test_wrong_signature_is_refused(eid_app: Any, idp: OidcProvider) -> None:
    hub, _ = eid_app
    impostor = new_key(str(idp.keys[0].kid))  # same kid, another private key
    with pytest.raises(AuthenticationFailed, match="bad_signature"):
        _validate(eid_app, _sign(idp, _claims(idp), impostor))
    stranger = new_key("unknown-kid")
    with pytest.raises(AuthenticationFailed, match="kid"):
        _validate(eid_app, _sign(idp, _claims(idp), stranger))
    with pytest.raises(AuthenticationFailed, match="malformed|decode"):
        _validate(eid_app, "not.a.jwt")
    # A symmetric algorithm is not on the accepted list (no HS256 with a guessable secret).
    hs256 = jwt.encode({"alg": "HS256"}, _claims(idp), OctKey.import_key("x" * 32))
    with pytest.raises(AuthenticationFailed):
        _validate(eid_app, hs256)


def test_jwks_key_rotation(eid_app: Any, idp: OidcProvider) -> None:
    _, client = eid_app
    first = client.get(browse_to_callback(client, idp, "/auth/oidc/test/login"), follow_redirects=False)
    assert first.status_code == 303
    idp.rotate("k2")  # the provider now signs with a kid the hub has not cached
    second = client.get(browse_to_callback(client, idp, "/auth/oidc/test/login"), follow_redirects=False)
    assert second.status_code == 303, second.text


def test_callback_failures_are_throttled(make_app: Any, idp: OidcProvider) -> None:
    _, client = make_app(idps={"test": idp.idp_settings()}, login_max_failures_per_address=3)
    for _ in range(3):
        assert client.get("/auth/oidc/test/callback?code=x&state=y").status_code == 401
    r = client.get("/auth/oidc/test/callback?code=x&state=y")
    assert r.status_code == 429 and r.json()["error"]["code"] == "login_throttled" and r.headers["retry-after"]
    assert client.get("/auth/oidc/test/login", follow_redirects=False).status_code == 429


def test_identity_provider_hosts_are_declared_for_egress(make_app: Any, idp: OidcProvider) -> None:
    settings = idp.idp_settings(extra_hosts=["jwks.idp.example"])
    hub, _ = make_app(idps={"test": settings, "other": {"issuer": "https://eid.gov.example/", "client_id": "x"}})
    hosts = {h for group in hub.pm.hook.sovhub_egress_hosts(hub=hub) for h in group or []}
    assert {"127.0.0.1", "jwks.idp.example", "eid.gov.example"} <= hosts


def test_representative_verifies_through_eid(make_app: Any, idp: OidcProvider, data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "registry.csv").write_text(
        "country,number,legal_name,status,representatives\nUA,12345678,Acme LLC,active,Olena Petrenko|1980-04-02\n",
        encoding="utf-8",
    )
    hub, client = make_app(idps={"test": idp.idp_settings()}, registry_file="registry.csv")
    _, secret, _ = org_with_key(hub, "acme")
    started = client.post("/hub/v1/organization/verification", headers=bearer(secret),
                          json={"country": "UA", "registry_number": "12345678", "legal_name": "Acme LLC"}).json()
    link = started["representative_url"][len(HUB):]
    redirect = client.get(link, follow_redirects=False)
    acr = parse_qs(urlsplit(redirect.headers["location"]).query)["acr_values"]
    assert acr == ["http://eidas.europa.eu/LoA/high"]

    # At level substantial the request waits and says why.
    weak = client.get(browse_to_callback(client, idp, link, level="substantial"), follow_redirects=False)
    assert weak.status_code == 200 and weak.json()["status"] == "awaiting_representative"
    assert "level substantial" in weak.json()["missing"][0]
    strong = client.get(browse_to_callback(client, idp, link, level="high"), follow_redirects=False)
    assert strong.status_code == 200 and strong.json()["status"] == "verified", strong.text
    status = client.get("/hub/v1/organization/verification", headers=bearer(secret)).json()
    assert status["verified"] is True
