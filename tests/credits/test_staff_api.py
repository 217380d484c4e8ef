"""The fund office's API (/hub/v1/admin/...): staff keys only, the CLI's domain functions, audited, and
bad input refused with nothing changed."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select, update

from sovhub.accounts import create_key, create_org, create_staff_key, revoke_key
from sovhub.credits.ledger import Ledger
from sovhub.credits.tables import CreditApplication, CreditGrant, CreditProgramme
from sovhub.errors import InvalidRequest, NotFound
from sovhub.store.tables import ApiKey, Membership, Organization, User
from tests.conftest import run_cli

from .conftest import credits_hub
from .test_applications import Events
from .test_enforcement import _client

PROGRAMME = {"name": "Gateway 2028", "budget": "1000", "description": "fast route",
             "partners": [{"name": "National Fund", "share": 60}, {"name": "Bank", "share": "40"}],
             "max_grant": 200, "grant_validity_days": 90, "kinds": ["startup"], "models": ["echo"]}


@pytest.fixture
def world(hub) -> dict[str, Any]:
    events = Events()
    hub.pm.register(events, name="tests.events")
    create_org(hub, "fund-office")
    acme = create_org(hub, "acme")
    with hub.db.session() as s:
        s.execute(update(Organization).where(Organization.id == acme.id).values(kind="startup"))
        officer = User(email="officer@fund.example", is_staff=True)
        insider = User(email="insider@acme.example", is_staff=True)
        plain = User(email="plain@fund.example", is_staff=False)
        s.add_all([officer, insider, plain])
        s.flush()
        s.add(Membership(user_id=insider.id, org_id=acme.id, role="admin"))
    return {"events": events, "acme_admin": create_key(hub, "acme").secret,
            "staff": create_staff_key(hub, "fund-office", "officer@fund.example"),
            "insider": create_staff_key(hub, "fund-office", "insider@acme.example"),
            "officer_id": officer.id}


@pytest.fixture
def client(hub, world):
    yield from _client(hub)


def _auth(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def _counts(hub) -> tuple[int, int, int, int]:
    with hub.db.session() as s:
        return (s.scalar(select(func.count()).select_from(CreditProgramme)) or 0,
                s.scalar(select(func.count()).select_from(CreditGrant)) or 0,
                s.scalar(select(func.count()).select_from(ApiKey)) or 0,
                len(hub.services.get(Ledger).verify()))


def _error(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()["error"]  # type: ignore[no-any-return]


def test_staff_create_a_programme_grant_and_decide_through_the_api_audited(hub, client, world) -> None:
    staff = _auth(world["staff"].secret)
    r = client.post("/hub/v1/admin/programmes", headers=staff, json=PROGRAMME)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["object"] == "programme" and made["budget"] == 1000 and made["left_to_grant"] == 1000
    assert made["partners"] == [{"name": "Bank", "share": 40}, {"name": "National Fund", "share": 60}]
    assert made["max_grant"] == 200 and made["eligibility"]["kinds"] == ["startup"]
    listed = client.get("/hub/v1/admin/programmes", headers=staff).json()["data"]
    assert [p["name"] for p in listed] == ["Gateway 2028"]
    # The public list keeps the budget to itself.
    assert "budget" not in client.get("/hub/v1/programmes").json()["data"][0]

    r = client.post(f"/hub/v1/admin/programmes/{made['id']}/grants", headers=staff,
                    json={"organization": "acme", "credits": "120.5", "reason": "pilot"})
    assert r.status_code == 201, r.text
    grant = r.json()
    assert (grant["object"], grant["organization"], grant["credits"], grant["reason"]) == (
        "programme.grant", "acme", 120.5, "pilot")
    assert grant["expires_at"] is not None  # the programme's validity
    left = client.get("/hub/v1/admin/programmes", headers=staff).json()["data"][0]["left_to_grant"]
    assert left == 879.5

    app = client.post(f"/hub/v1/programmes/{made['id']}/applications", headers=_auth(world["acme_admin"]),
                      json={"purpose": "train a model", "credits": 50}).json()
    queue = client.get("/hub/v1/admin/applications?status=pending", headers=staff).json()["data"]
    assert [(a["id"], a["organization"], a["credits"]) for a in queue] == [(app["id"], "acme", 50)]
    r = client.post(f"/hub/v1/admin/applications/{app['id']}/decision", headers=staff,
                    json={"decision": "approve", "reason": "strong plan; 30 now", "credits": 30})
    assert r.status_code == 200, r.text
    decided = r.json()
    assert decided["status"] == "approved" and decided["reason"] == "strong plan; 30 now" and decided["grant"]
    assert client.get("/hub/v1/admin/applications?status=pending", headers=staff).json()["data"] == []
    assert hub.services.get(Ledger).verify() == []

    prefix = world["staff"].prefix
    actors = {e.name: e.actor for e in world["events"].seen}
    assert actors["programme.created"] == f"user:{world['officer_id']}:officer@fund.example (key:{prefix})"
    assert actors["application.decided"] == f"user:{world['officer_id']}:officer@fund.example"
    granted = [e for e in world["events"].seen if e.name == "grant.created"]
    assert granted[0].actor.endswith(f"(key:{prefix})") and granted[0].data["reason"] == "pilot"


def test_reject_needs_a_reason_and_grants_nothing(hub, client, world) -> None:
    staff = _auth(world["staff"].secret)
    pid = client.post("/hub/v1/admin/programmes", headers=staff, json=PROGRAMME).json()["id"]
    app = client.post(f"/hub/v1/programmes/{pid}/applications", headers=_auth(world["acme_admin"]),
                      json={"purpose": "x", "credits": 50}).json()
    url = f"/hub/v1/admin/applications/{app['id']}/decision"
    before = _counts(hub)
    assert _error(client.post(url, headers=staff, json={"decision": "reject", "reason": "   "}), 400)["param"] \
        == "reason"
    assert _error(client.post(url, headers=staff, json={"decision": "reject"}), 400)
    assert _error(client.post(url, headers=staff, json={"decision": "maybe", "reason": "x"}), 400)
    assert _error(client.post(url, headers=staff, json={"decision": "reject", "reason": "x", "credits": 5}),
                  400)["param"] == "credits"
    assert _error(client.post(url, headers=staff, json={"decision": "approve", "reason": "x", "credits": 51}),
                  400)["param"] == "credits"
    assert _error(client.post(url, headers=staff, json={"decision": "approve", "reason": "x", "credits": "0"}),
                  400)["param"] == "credits"
    # A reviewer cannot decide on their own organization's application, by API either.
    assert _error(client.post(url, headers=_auth(world["insider"].secret),
                              json={"decision": "approve", "reason": "mine"}), 403)["code"] == "conflict_of_interest"
    assert _error(client.post("/hub/v1/admin/applications/999/decision", headers=staff,
                              json={"decision": "reject", "reason": "x"}), 404)
    assert _counts(hub) == before
    with hub.db.session() as s:
        assert s.scalar(select(CreditApplication.status)) == "pending"
    r = client.post(url, headers=staff, json={"decision": "reject", "reason": "out of scope"})
    assert r.status_code == 200 and r.json()["status"] == "rejected" and r.json()["grant"] is None
    assert _error(client.post(url, headers=staff, json={"decision": "approve", "reason": "x"}), 409)["code"] \
        == "already_decided"
    assert _counts(hub) == before


def test_bad_programmes_and_grants_are_refused_and_change_nothing(hub, client, world) -> None:
    staff = _auth(world["staff"].secret)
    pid = client.post("/hub/v1/admin/programmes", headers=staff, json=PROGRAMME).json()["id"]
    before = _counts(hub)
    bad_programmes = [
        ({**PROGRAMME, "name": "P2", "partners": [{"name": "A", "share": 60}, {"name": "B", "share": 30}]},
         400, "partners"),
        ({**PROGRAMME, "name": "P2", "budget": 0}, 400, "budget"),
        ({**PROGRAMME, "name": "P2", "budget": "1.0000001"}, 400, "budget"),
        ({**PROGRAMME, "name": "P2", "partners": [{"name": "A", "share": "150"}]}, 400, "partners"),
        ({**PROGRAMME, "name": "P2", "max_grant": 5000}, 400, "max_grant"),
        ({**PROGRAMME, "name": "P2", "opens_at": "2030-02-01T00:00:00Z", "closes_at": "2030-01-01T00:00:00Z"},
         400, "closes_at"),
        (PROGRAMME, 409, "name"),
        ({**PROGRAMME, "name": "P2", "partners": []}, 400, None),
        ({"name": "P2"}, 400, None),
    ]
    for body, status, param in bad_programmes:
        error = _error(client.post("/hub/v1/admin/programmes", headers=staff, json=body), status)
        if param:
            assert error["param"] == param, (body, error)
    grants = f"/hub/v1/admin/programmes/{pid}/grants"
    bad_grants = [
        (grants, {"organization": "acme", "credits": 500, "reason": "x"}, 400, "grant_too_large"),
        (grants, {"organization": "acme", "credits": 0, "reason": "x"}, 400, None),
        (grants, {"organization": "acme", "credits": 5, "reason": "  "}, 400, None),
        (grants, {"organization": "acme", "credits": 5, "reason": "x", "expires_at": "2001-01-01T00:00:00Z"},
         400, None),
        (grants, {"organization": "nobody", "credits": 5, "reason": "x"}, 404, None),
        # fund-office is not of kind startup.
        (grants, {"organization": "fund-office", "credits": 5, "reason": "x"}, 403, "kind_not_eligible"),
        ("/hub/v1/admin/programmes/999/grants", {"organization": "acme", "credits": 5, "reason": "x"}, 404, None),
        (grants, {"organization": "acme", "reason": "x"}, 400, None),
    ]
    for url, body, status, code in bad_grants:
        error = _error(client.post(url, headers=staff, json=body), status)
        if code:
            assert error["code"] == code, (body, error)
    # More than is left in the pool: five grants of 200 empty it, the sixth is refused.
    for _ in range(5):
        assert client.post(grants, headers=staff, json={"organization": "acme", "credits": 200,
                                                        "reason": "x"}).status_code == 201
    error = _error(client.post(grants, headers=staff, json={"organization": "acme", "credits": 1, "reason": "x"}),
                   400)
    assert error["code"] == "programme_budget_exceeded"
    after = _counts(hub)
    assert after[0] == before[0] and after[1] == before[1] + 5 and after[3] == 0


def test_no_organization_key_reaches_the_staff_api_or_mints_a_staff_key(hub, client, world) -> None:
    admin = _auth(world["acme_admin"])
    before = _counts(hub)
    routes = [("GET", "/hub/v1/admin/programmes", None), ("POST", "/hub/v1/admin/programmes", PROGRAMME),
              ("GET", "/hub/v1/admin/applications", None),
              ("POST", "/hub/v1/admin/programmes/1/grants", {"organization": "acme", "credits": 1, "reason": "x"}),
              ("POST", "/hub/v1/admin/applications/1/decision", {"decision": "reject", "reason": "x"}),
              ("PUT", "/hub/v1/admin/organizations/acme/kind", {"kind": "nonprofit"})]
    for method, url, body in routes:
        error = _error(client.request(method, url, headers=admin, json=body), 403)
        assert (error["code"], error["required_scope"]) == ("insufficient_scope", "staff"), url
    # The attack: an organization's admin asks its key API for a staff key.
    r = client.post("/hub/v1/keys", headers=admin, json={"name": "me-staff", "scopes": ["staff"]})
    assert r.status_code in (400, 400), r.text
    r = client.post("/hub/v1/keys", headers=admin, json={"name": "me-staff", "scopes": ["admin", "staff"]})
    assert r.status_code in (400, 400), r.text
    with pytest.raises(InvalidRequest):
        create_key(hub, "acme", scopes=["staff"])
    assert _counts(hub) == before
    # A staff key cannot make keys either (it holds no admin) or call models.
    staff = _auth(world["staff"].secret)
    assert _error(client.post("/hub/v1/keys", headers=staff, json={"name": "child"}), 403)["code"] == "insufficient_scope"
    assert _error(client.post("/v1/chat/completions", headers=staff,
                              json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]}), 403)
    assert _counts(hub) == before


def test_a_staff_scope_without_a_staff_member_behind_it_is_refused(hub, client, world) -> None:
    # A row forged to hold the scope but bound to nobody.
    forged = create_key(hub, "acme", name="forged")
    with hub.db.session() as s:
        s.execute(update(ApiKey).where(ApiKey.id == forged.id).values(scopes=["staff"]))
    assert _error(client.get("/hub/v1/admin/programmes", headers=_auth(forged.secret)), 403)["code"] \
        == "insufficient_scope"
    # A staff member who loses the flag: their key stops at once.
    staff = _auth(world["staff"].secret)
    assert client.get("/hub/v1/admin/programmes", headers=staff).status_code == 200
    with hub.db.session() as s:
        s.execute(update(User).where(User.id == world["officer_id"]).values(is_staff=False))
    assert _error(client.get("/hub/v1/admin/programmes", headers=staff), 403)["code"] == "not_staff"
    assert _error(client.post("/hub/v1/admin/programmes", headers=staff, json=PROGRAMME), 403)["code"] == "not_staff"
    with hub.db.session() as s:
        assert s.scalar(select(func.count()).select_from(CreditProgramme)) == 0
    # A revoked staff key.
    revoke_key(hub, world["insider"].prefix, actor="tests")
    assert _error(client.get("/hub/v1/admin/programmes", headers=_auth(world["insider"].secret)), 401)


def test_only_staff_members_get_staff_keys(hub, world) -> None:
    with pytest.raises(InvalidRequest) as exc:
        create_staff_key(hub, "fund-office", "plain@fund.example")
    assert exc.value.code == "not_staff"
    with pytest.raises(NotFound):
        create_staff_key(hub, "fund-office", "nobody@fund.example")


def test_keys_create_staff_by_cli(data_dir, capsys) -> None:
    hub = credits_hub(data_dir)
    create_org(hub, "fund-office")
    with hub.db.session() as s:
        s.add(User(email="officer@fund.example", is_staff=True))
    hub.close()
    assert run_cli(data_dir, "keys", "create", "--org", "fund-office", "--staff", "officer@fund.example",
                   "--scope", "admin") == 2
    capsys.readouterr()
    assert run_cli(data_dir, "keys", "create", "--org", "fund-office", "--staff", "nobody@fund.example") == 1
    capsys.readouterr()
    assert run_cli(data_dir, "keys", "create", "--org", "fund-office", "--staff", "officer@fund.example") == 0
    out = capsys.readouterr()
    assert "staff key" in out.err and out.out.strip().startswith("sk-sov-")
    hub = credits_hub(data_dir)
    with hub.db.session() as s:
        key = s.scalar(select(ApiKey))
    assert key.scopes == ["staff"] and key.staff_user_id is not None
    hub.close()


def test_staff_record_an_organizations_kind_and_bad_kinds_change_nothing(hub, client, world) -> None:
    staff = _auth(world["staff"].secret)
    url = "/hub/v1/admin/organizations/fund-office/kind"
    assert _error(client.put(url, headers=staff, json={"kind": "spaceship"}), 400)
    assert _error(client.put("/hub/v1/admin/organizations/nobody/kind", headers=staff, json={"kind": "startup"}),
                  404)
    with hub.db.session() as s:
        assert s.scalar(select(Organization.kind).where(Organization.name == "fund-office")) is None
    r = client.put(url, headers=staff, json={"kind": "startup"})
    assert r.status_code == 200 and r.json() == {"object": "organization.kind", "organization": "fund-office",
                                                 "kind": "startup"}
    kind_set = next(e for e in world["events"].seen if e.name == "organization.kind_set")
    assert kind_set.actor.startswith(f"user:{world['officer_id']}:officer@fund.example")
    # Now eligible for the start-ups' programme.
    pid = client.post("/hub/v1/admin/programmes", headers=staff, json=PROGRAMME).json()["id"]
    assert client.post(f"/hub/v1/admin/programmes/{pid}/grants", headers=staff,
                       json={"organization": "fund-office", "credits": 5, "reason": "x"}).status_code == 201
    assert client.put(url, headers=staff, json={"kind": None}).json()["kind"] is None
