"""Who may call /v1/responses: every route refuses keys without the scope `inference`, revoked and
expired keys, and another organization's key finds nothing of acme's (404, told apart from nothing)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from sovhub.accounts import create_key, create_org, revoke_key
from sovhub.hub import Hub
from sovhub.store.base import utcnow
from sovhub.store.tables import ApiKey
from tests.contract.schemas import assert_valid

RID = "{rid}"
ROUTES = [
    ("POST", "/v1/responses", {"model": "echo", "input": "hello"}),
    ("POST", "/v1/responses", {"model": "echo", "input": "hello", "background": True}),
    ("POST", "/v1/responses/input_tokens", {"model": "echo", "input": "hello"}),
    ("GET", f"/v1/responses/{RID}", None),
    ("DELETE", f"/v1/responses/{RID}", None),
    ("GET", f"/v1/responses/{RID}/input_items", None),
    ("POST", f"/v1/responses/{RID}/cancel", None),
]


def _call(client: TestClient, method: str, path: str, body: dict | None, rid: str, secret: str):
    return client.request(method, path.replace(RID, rid), json=body, headers={"authorization": f"Bearer {secret}"})


@pytest.fixture
def stored(app_client: TestClient) -> str:
    r = app_client.post("/v1/responses", json={"model": "echo", "input": "acme internal plans"})
    assert r.status_code == 200
    return str(r.json()["id"])


def test_every_route_is_listed_here() -> None:
    """A route added to the router and not to ROUTES fails here, so none goes untested."""
    from sovhub.api.responses.router import router

    served = {(m, r.path) for r in router.routes for m in getattr(r, "methods", ())}
    assert served == {(m, p.replace(RID, "{response_id}")) for m, p, _ in ROUTES}


def test_a_key_without_the_inference_scope_is_refused_everywhere(app_client: TestClient, hub: Hub,
                                                                   stored: str) -> None:
    key = create_key(hub, "acme", name="no-inference")
    with hub.db.session() as s:  # a key holding other scopes only (none minted today gives that; a row may)
        s.execute(update(ApiKey).where(ApiKey.id == key.id).values(scopes=[]))
    for method, path, body in ROUTES:
        r = _call(app_client, method, path, body, stored, key.secret)
        assert r.status_code == 403, (method, path, r.text)
        error = r.json()["error"]
        assert error["code"] == "insufficient_scope" and error["required_scope"] == "inference"
    assert app_client.get(f"/v1/responses/{stored}").status_code == 200  # nothing was touched


def test_revoked_and_expired_keys_are_refused_everywhere(app_client: TestClient, hub: Hub, stored: str) -> None:
    revoked = create_key(hub, "acme", name="revoked")
    assert _call(app_client, "GET", f"/v1/responses/{RID}", None, stored, revoked.secret).status_code == 200
    revoke_key(hub, revoked.prefix)
    expired = create_key(hub, "acme", name="expired", expires_at=utcnow() + timedelta(days=1))
    with hub.db.session() as s:
        s.execute(update(ApiKey).where(ApiKey.id == expired.id).values(expires_at=utcnow() - timedelta(seconds=1)))
    for secret, code in ((revoked.secret, "revoked_api_key"), (expired.secret, "expired_api_key")):
        for method, path, body in ROUTES:
            r = _call(app_client, method, path, body, stored, secret)
            assert r.status_code == 401 and r.json()["error"]["code"] == code, (method, path, r.text)
    assert app_client.get(f"/v1/responses/{stored}").status_code == 200


def test_another_organization_finds_nothing_and_learns_nothing(app_client: TestClient, hub: Hub,
                                                                stored: str) -> None:
    create_org(hub, "rival")
    rival = create_key(hub, "rival").secret
    missing = "resp_" + "0" * 32
    for method, path, _body in ROUTES:
        if RID not in path:
            continue
        theirs = _call(app_client, method, path, None, stored, rival)
        nothing = _call(app_client, method, path, None, missing, rival)
        assert theirs.status_code == nothing.status_code == 404, (method, path, theirs.text)
        assert_valid("ErrorResponse", theirs.json())
        # The same answer as for an id that never existed, but for the id itself.
        assert theirs.json()["error"]["message"].replace(stored, "ID") == \
            nothing.json()["error"]["message"].replace(missing, "ID")
    # Continuing it, or referring to one of its items, is the same 400 as for nothing at all.
    item = app_client.get(f"/v1/responses/{stored}/input_items").json()["data"][0]["id"]
    cases = [({"previous_response_id": stored}, {"previous_response_id": missing}),
             ({"input": [{"type": "item_reference", "id": item}]},
              {"input": [{"type": "item_reference", "id": "msg_" + "0" * 32}]})]
    for theirs_body, nothing_body in cases:
        theirs = _call(app_client, "POST", "/v1/responses", {"model": "echo", "input": "x", **theirs_body}, "", rival)
        nothing = _call(app_client, "POST", "/v1/responses", {"model": "echo", "input": "x", **nothing_body}, "",
                        rival)
        assert theirs.status_code == nothing.status_code == 400
        assert theirs.json()["error"]["code"] == nothing.json()["error"]["code"]
    # Still acme's, whole.
    assert app_client.get(f"/v1/responses/{stored}").status_code == 200
    assert app_client.get(f"/v1/responses/{stored}/input_items").json()["data"][0]["id"] == item
