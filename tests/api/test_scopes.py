"""Least privilege, checked on the whole app: every route that calls a model or holds a
model's input or output refuses a key without the scope `inference`; every route that manages
the organization refuses a key without `admin`; the fund office's routes refuse every key but a
staff key (scope `staff`). A new /v1 or /hub/v1 route must be sorted into one of the lists below,
or the first test fails."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from sovhub.accounts import create_key
from sovhub.hub import Hub
from sovhub.store.tables import ApiKey, Organization, UsageRecord

INFERENCE = {
    ("POST", "/v1/chat/completions"), ("POST", "/v1/embeddings"), ("POST", "/v1/moderations"),
    ("POST", "/hub/v1/pii"),
    ("GET", "/v1/files"), ("POST", "/v1/files"), ("GET", "/v1/files/{file_id}"),
    ("DELETE", "/v1/files/{file_id}"), ("GET", "/v1/files/{file_id}/content"),
    ("GET", "/v1/batches"), ("POST", "/v1/batches"), ("GET", "/v1/batches/{batch_id}"),
    ("POST", "/v1/batches/{batch_id}/cancel"), ("GET", "/hub/v1/batches/{batch_id}/schedule"),
    ("POST", "/v1/responses"), ("POST", "/v1/responses/input_tokens"), ("GET", "/v1/responses/{response_id}"),
    ("DELETE", "/v1/responses/{response_id}"), ("POST", "/v1/responses/{response_id}/cancel"),
    ("GET", "/v1/responses/{response_id}/input_items"),
}
ADMIN = {("GET", "/hub/v1/keys"), ("POST", "/hub/v1/keys"), ("DELETE", "/hub/v1/keys/{prefix}"),
         ("POST", "/hub/v1/organization/verification"), ("GET", "/hub/v1/organization/export"),
         ("POST", "/hub/v1/organization/erase"), ("POST", "/hub/v1/programmes/{programme_id}/applications")}
# The fund office's API: a staff key only (bound to a staff member, minted by the operator's CLI).
STAFF = {("GET", "/hub/v1/admin/programmes"), ("POST", "/hub/v1/admin/programmes"),
         ("POST", "/hub/v1/admin/programmes/{programme_id}/grants"), ("GET", "/hub/v1/admin/applications"),
         ("POST", "/hub/v1/admin/applications/{application_id}/decision"),
         ("PUT", "/hub/v1/admin/organizations/{org_name}/kind"),
         ("PUT", "/hub/v1/admin/organizations/{org_name}/members/{email}"),
         ("DELETE", "/hub/v1/admin/organizations/{org_name}/members/{email}"),
         ("PUT", "/hub/v1/admin/partners/{partner_id}/members/{email}"),
         ("DELETE", "/hub/v1/admin/partners/{partner_id}/members/{email}")}
# Open to any valid key of the organization: reading what it may use, what it owes, its own
# record, and the rights and appeals every holder of a decision has.
ANY_KEY = {
    ("GET", "/v1/models"), ("GET", "/v1/models/{model_id}"), ("GET", "/hub/v1/prices"),
    ("GET", "/hub/v1/organization/credits"), ("GET", "/hub/v1/programmes"),
    ("GET", "/hub/v1/organization/applications"), ("GET", "/hub/v1/organization/notices"),
    ("GET", "/hub/v1/organization/statements"), ("GET", "/hub/v1/organization/verification"),
    ("GET", "/hub/v1/organization/usage"), ("GET", "/hub/v1/organization/limits"),
    ("POST", "/hub/v1/appeals"), ("GET", "/hub/v1/appeals/{appeal_id}"), ("GET", "/hub/v1/me/export"),
    ("POST", "/hub/v1/me/erase"), ("GET", "/hub/v1/transparency"),
}
BODIES: dict[str, Any] = {
    "/v1/chat/completions": {"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/embeddings": {"model": "e5", "input": "hi"}, "/v1/moderations": {"input": "hi"},
    "/hub/v1/pii": {"input": "hi"}, "/v1/responses": {"model": "echo", "input": "hi"},
    "/v1/responses/input_tokens": {"model": "echo", "input": "hi"},
    "/v1/batches": {"input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "24h"},
    "/hub/v1/keys": {"name": "child"},
    "/hub/v1/organization/verification": {"country": "UA", "registry_number": "12345678", "legal_name": "Acme"},
    "/hub/v1/organization/erase": {"confirm": "acme"},
    "/hub/v1/programmes/{programme_id}/applications": {"purpose": "a pilot", "credits": "10"},
    "/hub/v1/admin/programmes": {"name": "P", "budget": "10", "partners": [{"name": "Fund", "share": 100}]},
    "/hub/v1/admin/programmes/{programme_id}/grants": {"organization": "acme", "credits": "1", "reason": "x"},
    "/hub/v1/admin/applications/{application_id}/decision": {"decision": "reject", "reason": "x"},
    "/hub/v1/admin/organizations/{org_name}/kind": {"kind": "startup"},
    "/hub/v1/admin/organizations/{org_name}/members/{email}": {"role": "admin"},
}


def _served(app_client: TestClient) -> set[tuple[str, str]]:
    paths = app_client.app.openapi()["paths"]  # type: ignore[attr-defined]
    return {(method.upper(), path) for path, ops in paths.items() for method in ops
            if path.startswith(("/v1/", "/hub/v1/"))}


def _key_with(hub: Hub, scopes: list[str]) -> str:
    key = create_key(hub, "acme", name="scoped")
    with hub.db.session() as s:  # nothing mints these today; a row may hold them, and the check must hold
        s.execute(update(ApiKey).where(ApiKey.id == key.id).values(scopes=scopes))
    return key.secret


def _call(client: TestClient, method: str, path: str, secret: str) -> Any:
    concrete = path.replace("{file_id}", "file-x").replace("{batch_id}", "batch_x") \
        .replace("{response_id}", "resp_x").replace("{prefix}", "sk-x").replace("{programme_id}", "1") \
        .replace("{application_id}", "1").replace("{org_name}", "acme").replace("{partner_id}", "1") \
        .replace("{email}", "someone@example.org")
    body = BODIES.get(path) if method in ("POST", "PUT") else None
    files = {"file": ("a.jsonl", b"{}\n")} if path == "/v1/files" and method == "POST" else None
    data = {"purpose": "batch"} if files else None
    return client.request(method, concrete, json=None if files else body, files=files, data=data,
                          headers={"authorization": f"Bearer {secret}"})


def test_every_api_route_is_sorted_by_the_scope_it_needs(app_client: TestClient) -> None:
    lists = (INFERENCE, ADMIN, ANY_KEY, STAFF)
    assert all(not (a & b) for i, a in enumerate(lists) for b in lists[i + 1:])
    assert _served(app_client) == set().union(*lists), "sort the new route into INFERENCE, ADMIN, ANY_KEY or STAFF"


def test_a_key_without_inference_reaches_no_model_and_no_model_data(app_client: TestClient, hub: Hub) -> None:
    secret = _key_with(hub, ["admin"])
    with hub.db.session() as s:
        assert s.scalar(select(func.count()).select_from(UsageRecord)) == 0
    for method, path in sorted(INFERENCE):
        r = _call(app_client, method, path, secret)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        error = r.json()["error"]
        assert (error["code"], error.get("required_scope")) == ("insufficient_scope", "inference"), (method, path)
    with hub.db.session() as s:
        assert s.scalar(select(func.count()).select_from(UsageRecord)) == 0, "a refused call reached the meter"


def test_a_key_without_admin_manages_nothing(app_client: TestClient, hub: Hub) -> None:
    secret = _key_with(hub, ["inference"])
    before = app_client.get("/hub/v1/keys").json()
    for method, path in sorted(ADMIN):
        r = _call(app_client, method, path, secret)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert r.json()["error"]["code"] == "insufficient_scope", (method, path)
    assert app_client.get("/hub/v1/keys").json() == before  # acme, its keys and its data are all still there
    assert app_client.get("/hub/v1/organization/verification").json()["request"] is None  # nothing was filed


def test_no_organization_key_reaches_the_fund_office(app_client: TestClient, hub: Hub) -> None:
    from sovhub.credits.tables import CreditProgramme

    for scopes in (["inference", "admin"], ["admin"], ["inference"]):
        secret = _key_with(hub, scopes)
        for method, path in sorted(STAFF):
            r = _call(app_client, method, path, secret)
            assert r.status_code == 403, (scopes, method, path, r.status_code, r.text)
            error = r.json()["error"]
            assert (error["code"], error.get("required_scope")) == ("insufficient_scope", "staff"), (method, path)
    with hub.db.session() as s:
        assert s.scalar(select(func.count()).select_from(CreditProgramme)) == 0
        assert s.scalar(select(Organization.kind).where(Organization.name == "acme")) is None
