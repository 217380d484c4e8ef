from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from sovhub.accounts import KeyCache, authenticate, create_key, create_org, list_keys
from sovhub.errors import InsufficientScope
from sovhub.hub import Hub
from sovhub.store.base import utcnow
from sovhub.store.tables import ApiKey


def test_org_manages_its_own_keys_only(app_client: TestClient, hub: Hub) -> None:
    create_org(hub, "other")
    other = create_key(hub, "other")
    created = app_client.post("/hub/v1/keys", json={"name": "ci"})
    assert created.status_code == 201 and created.json()["secret"].startswith("sk-sov-")
    listed = app_client.get("/hub/v1/keys").json()["data"]
    assert {k["prefix"] for k in listed} >= {created.json()["prefix"]}
    assert other.prefix not in {k["prefix"] for k in listed}
    assert all("secret" not in k and "secret_hash" not in k for k in listed)
    r = app_client.delete(f"/hub/v1/keys/{other.prefix}")
    assert r.status_code == 404
    assert app_client.delete(f"/hub/v1/keys/{created.json()['prefix']}").json()["revoked"] is True
    new = TestClient(app_client.app, headers={"authorization": f"Bearer {created.json()['secret']}"})
    assert new.get("/v1/models").status_code == 401


def _as(app_client: TestClient, secret: str) -> TestClient:
    return TestClient(app_client.app, headers={"authorization": f"Bearer {secret}"})


def _insufficient(r: Any) -> dict[str, Any]:
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["type"] == "permission_error" and error["code"] == "insufficient_scope"
    return error  # type: ignore[no-any-return]


def test_an_inference_key_cannot_list_mint_or_revoke_keys(app_client: TestClient, hub: Hub) -> None:
    # The attack of issue 12: a leaked trial key mints a key that survives its own revocation.
    trial = create_key(hub, "acme", name="trial", scopes=["inference"])
    leaked = _as(app_client, trial.secret)
    assert leaked.get("/v1/models").status_code == 200  # it still does what it is for
    error = _insufficient(leaked.post("/hub/v1/keys", json={"name": "backdoor"}))
    assert error["required_scope"] == "admin" and "admin" in error["message"]
    _insufficient(leaked.get("/hub/v1/keys"))
    admin_prefix = app_client.get("/hub/v1/keys").json()["data"][0]["prefix"]
    _insufficient(leaked.delete(f"/hub/v1/keys/{admin_prefix}"))
    assert [k.prefix for k, _ in list_keys(hub, "acme") if k.revoked_at is None] == [admin_prefix, trial.prefix]


def test_an_admin_key_mints_an_inference_key_with_lower_limits(app_client: TestClient, hub: Hub) -> None:
    created = app_client.post("/hub/v1/keys", json={"name": "ci", "limits": {"rpm": 5, "tpd": 1000}})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["scopes"] == ["inference"] and body["limits"] == {"rpm": 5, "tpd": 1000}
    child = _as(app_client, body["secret"])
    assert child.get("/v1/models").status_code == 200
    _insufficient(child.post("/hub/v1/keys", json={}))
    listed = {k["prefix"]: k for k in app_client.get("/hub/v1/keys").json()["data"]}
    assert listed[body["prefix"]]["scopes"] == ["inference"]
    assert listed[body["prefix"]]["limits"] == {"rpm": 5, "tpd": 1000}


def test_a_child_cannot_exceed_its_parent(app_client: TestClient, hub: Hub) -> None:
    expiry = (utcnow() + timedelta(days=7)).replace(microsecond=0)
    parent = create_key(hub, "acme", name="team", scopes=["admin"], limits={"rpm": 10, "tpd": 500}, expires_at=expiry)
    team = _as(app_client, parent.secret)
    too_fast = _insufficient(team.post("/hub/v1/keys", json={"limits": {"rpm": 11}}))
    assert too_fast["param"] == "rpm" and "rpm=10" in too_fast["message"]
    too_late = (expiry + timedelta(days=1)).isoformat()
    assert _insufficient(team.post("/hub/v1/keys", json={"expires_at": too_late}))["param"] == "expires_at"
    # Limits and expiry left out are inherited, not lifted.
    inherited = team.post("/hub/v1/keys", json={"scopes": ["admin"], "limits": {"tpm": 50}})
    assert inherited.status_code == 201, inherited.text
    got = inherited.json()
    assert got["limits"] == {"rpm": 10, "tpd": 500, "tpm": 50} and got["scopes"] == ["inference", "admin"]
    assert datetime.fromisoformat(got["expires_at"]) == expiry
    # A grandchild is bounded by its own creator, which is bounded by the first.
    grandchild = _as(app_client, got["secret"])
    assert _insufficient(grandchild.post("/hub/v1/keys", json={"limits": {"tpm": 51}}))["param"] == "tpm"
    unknown = team.post("/hub/v1/keys", json={"scopes": ["root"]})
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "scopes.0"


def test_the_creators_scopes_are_read_from_the_database_not_the_cache(hub: Hub, api_key: str) -> None:
    # A principal cached while the key was admin (or forged in-process) does not outrank the stored key.
    trial = create_key(hub, "acme", scopes=["inference"])
    stale = authenticate(hub, trial.secret)
    claimed = replace(stale, scopes=frozenset({"inference", "admin"}))
    with pytest.raises(InsufficientScope, match="only a key with the scope 'admin'"):
        create_key(hub, "acme", creator=claimed)
    other = create_org(hub, "other")
    assert other.id != stale.org_id
    with pytest.raises(InsufficientScope, match="only a key of this organization"):
        create_key(hub, "other", creator=authenticate(hub, api_key))


def test_revoking_a_creator_revokes_every_key_minted_from_it(app_client: TestClient, hub: Hub) -> None:
    parent = create_key(hub, "acme", name="team", scopes=["admin"])
    team = _as(app_client, parent.secret)
    child = team.post("/hub/v1/keys", json={"scopes": ["admin"]}).json()
    grandchild = _as(app_client, child["secret"]).post("/hub/v1/keys", json={}).json()
    sibling = app_client.post("/hub/v1/keys", json={}).json()  # minted by another key: unaffected
    for secret in (parent.secret, child["secret"], grandchild["secret"]):
        assert _as(app_client, secret).get("/v1/models").status_code == 200  # now in the key cache
    assert app_client.delete(f"/hub/v1/keys/{parent.prefix}").status_code == 200
    for secret in (parent.secret, child["secret"], grandchild["secret"]):
        r = _as(app_client, secret).get("/v1/models")
        assert r.status_code == 401 and r.json()["error"]["code"] == "revoked_api_key"
    assert _as(app_client, sibling["secret"]).get("/v1/models").status_code == 200


def test_a_revoked_creator_cannot_mint_even_from_a_cached_copy(app_client: TestClient, hub: Hub) -> None:
    # Another replica revoked the key: this process still holds it in its key cache.
    parent = create_key(hub, "acme", scopes=["admin"])
    team = _as(app_client, parent.secret)
    assert team.get("/hub/v1/keys").status_code == 200
    with hub.db.session() as s:
        s.execute(update(ApiKey).where(ApiKey.prefix == parent.prefix).values(revoked_at=utcnow()))
    r = team.post("/hub/v1/keys", json={})
    assert r.status_code == 401 and r.json()["error"]["code"] == "revoked_api_key"


def test_an_expired_key_is_refused(app_client: TestClient, hub: Hub) -> None:
    key = create_key(hub, "acme", expires_at=utcnow() + timedelta(hours=1))
    client = _as(app_client, key.secret)
    assert client.get("/v1/models").status_code == 200
    with hub.db.session() as s:
        s.execute(update(ApiKey).where(ApiKey.prefix == key.prefix).values(expires_at=utcnow() - timedelta(seconds=1)))
    hub.services.get(KeyCache).forget_prefix(key.prefix)
    r = client.get("/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "expired_api_key"
    past = app_client.post("/hub/v1/keys", json={"expires_at": (utcnow() - timedelta(days=1)).isoformat()})
    assert past.status_code == 400 and past.json()["error"]["param"] == "expires_at"


def test_verification_request_needs_an_admin_key(app_client: TestClient, hub: Hub) -> None:
    trial = _as(app_client, create_key(hub, "acme", scopes=["inference"]).secret)
    r = trial.post("/hub/v1/organization/verification",
                   json={"country": "UA", "registry_number": "1", "legal_name": "Acme"})
    _insufficient(r)
    assert trial.get("/hub/v1/organization/verification").status_code == 200  # reading stays open
