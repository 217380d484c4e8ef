from __future__ import annotations

from fastapi.testclient import TestClient

from sovhub.accounts import create_key, create_org
from sovhub.hub import Hub


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
