"""Applications, decisions, statements and the transparency section, through the API and the CLI."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest

from sovhub.accounts import create_key, create_org
from sovhub.credits.amounts import MICRO
from sovhub.credits.applications import decide
from sovhub.credits.control import Credits
from sovhub.credits.prices import set_price
from sovhub.credits.programmes import ProgrammeRules, create_programme, grant_credits
from sovhub.credits.transparency import programmes_section
from sovhub.errors import Conflict, InvalidRequest, PermissionDenied
from sovhub.events import Event
from sovhub.hookspecs import hookimpl
from sovhub.store.base import utcnow
from sovhub.store.tables import Membership, User

from .test_enforcement import _client, settle_all


class Events:
    def __init__(self) -> None:
        self.seen: list[Event] = []

    @hookimpl
    def sovhub_event(self, hub: Any, event: Event) -> None:
        self.seen.append(event)


@pytest.fixture
def world(hub) -> dict[str, Any]:
    events = Events()
    hub.pm.register(events, name="tests.events")
    acme = create_org(hub, "acme")
    create_programme(hub, "Gateway", 1000 * MICRO, [("Fund", 5000), ("Bank", 5000)],
                     ProgrammeRules(max_grant=100 * MICRO, opens_at=utcnow() - timedelta(days=1),
                                    closes_at=utcnow() + timedelta(days=30), description="fast route"),
                     actor="tests")
    create_programme(hub, "Closed", 10 * MICRO, [("Fund", 10_000)],
                     ProgrammeRules(opens_at=utcnow() + timedelta(days=10)), actor="tests")
    set_price(hub, "echo", input_per_1m=1000 * MICRO, output_per_1m=1000 * MICRO, actor="tests")
    with hub.db.session() as s:
        staff = User(email="officer@fund.example", is_staff=True)
        insider = User(email="insider@acme.example", is_staff=True)
        s.add_all([staff, insider])
        s.flush()
        s.add(Membership(user_id=insider.id, org_id=acme.id, role="admin"))
    return {"events": events, "admin": create_key(hub, "acme").secret,
            "inference": create_key(hub, "acme", scopes=["inference"]).secret,
            "staff": staff.id, "insider": insider.id}


@pytest.fixture
def client(hub, world):
    yield from _client(hub)


def _auth(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def test_apply_review_and_decide_with_every_step_audited(hub, client, world) -> None:
    listed = client.get("/hub/v1/programmes").json()["data"]
    gateway = next(p for p in listed if p["name"] == "Gateway")
    assert gateway["open"] and gateway["max_grant"] == 100 and "budget" not in gateway
    url = f"/hub/v1/programmes/{gateway['id']}/applications"
    # An inference-only key cannot commit the organization.
    assert client.post(url, headers=_auth(world["inference"]), json={"purpose": "x", "credits": 5}).status_code == 403
    assert client.post(url, headers=_auth(world["admin"]), json={"purpose": "x", "credits": 500}).status_code == 400
    r = client.post(url, headers=_auth(world["admin"]), json={"purpose": "Train a Ukrainian legal model",
                                                              "credits": "50.5"})
    assert r.status_code == 201, r.text
    app = r.json()
    assert app["status"] == "pending" and app["credits"] == 50.5
    again = client.post(url, headers=_auth(world["admin"]), json={"purpose": "again", "credits": 1})
    assert again.status_code == 409 and again.json()["error"]["code"] == "application_pending"
    closed = next(p for p in listed if p["name"] == "Closed")
    r = client.post(f"/hub/v1/programmes/{closed['id']}/applications", headers=_auth(world["admin"]),
                    json={"purpose": "x", "credits": 1})
    assert r.status_code == 409 and r.json()["error"]["code"] == "call_not_open"
    # Staff decide: a reason is required; a member of the applicant cannot decide.
    with pytest.raises(InvalidRequest):
        decide(hub, app["id"], "approved", reason=" ", reviewer_id=world["staff"])
    with pytest.raises(PermissionDenied) as exc:
        decide(hub, app["id"], "approved", reason="looks good", reviewer_id=world["insider"])
    assert exc.value.code == "conflict_of_interest"
    row = decide(hub, app["id"], "approved", reason="strong plan; 40 now", reviewer_id=world["staff"],
                 amount=40 * MICRO)
    assert row.status == "approved" and row.grant_id is not None
    with pytest.raises(Conflict):
        decide(hub, app["id"], "rejected", reason="changed my mind", reviewer_id=world["staff"])
    mine = client.get("/hub/v1/organization/applications", headers=_auth(world["inference"])).json()["data"]
    assert [(a["status"], a["reason"], a["grant"]) for a in mine] == [("approved", "strong plan; 40 now", row.grant_id)]
    hub.services.get(Credits).state.load()
    credits = client.get("/hub/v1/organization/credits", headers=_auth(world["admin"])).json()
    assert credits["balance"] == 40
    names = [e.name for e in world["events"].seen]
    assert names.count("application.submitted") == 1 and names.count("application.decided") == 1
    assert "grant.created" in names
    decided = next(e for e in world["events"].seen if e.name == "application.decided")
    assert decided.data["reason"] == "strong plan; 40 now" and decided.actor.endswith("officer@fund.example")


def test_statement_lines_trace_to_request_ids_in_json_csv_and_html(hub, client, world) -> None:
    grant = grant_credits(hub, "Gateway", "acme", 10 * MICRO, reason="pilot", actor="tests")
    hub.services.get(Credits).state.load()
    for rid in ("req-1", "req-2"):
        r = client.post("/v1/chat/completions", headers={**_auth(world["admin"]), "x-request-id": rid},
                        json={"model": "echo", "messages": [{"role": "user", "content": "one two three"}],
                              "max_tokens": 5})
        assert r.status_code == 200
    settle_all(client, hub)
    body = client.get("/hub/v1/organization/statements", headers=_auth(world["inference"])).json()
    usage = [line for line in body["lines"] if line["kind"] == "usage"]
    assert [(u["request_id"], u["grant"], u["programme"], u["credits"]) for u in usage] == [
        ("req-1", grant.id, "Gateway", -0.006), ("req-2", grant.id, "Gateway", -0.006)]
    assert body["granted"] == 10 and body["used"] == 0.012 and body["has_more"] is False
    page = client.get("/hub/v1/organization/statements?limit=1", headers=_auth(world["admin"])).json()
    assert page["has_more"] and len(page["lines"]) == 1
    rows = list(csv.DictReader(io.StringIO(client.get("/hub/v1/organization/statements?format=csv",
                                                      headers=_auth(world["admin"])).text)))
    assert [r["request_id"] for r in rows if r["kind"] == "usage"] == ["req-1", "req-2"]
    page = client.get("/hub/v1/organization/statements?format=html", headers=_auth(world["admin"]))
    assert page.headers["content-type"].startswith("text/html") and "req-2" in page.text
    assert page.text.count('role="img"') == 3 and "Credits used per model" in page.text
    assert client.get("/hub/v1/organization/statements?month=2027-13",
                      headers=_auth(world["admin"])).status_code == 400


def test_transparency_shows_aggregates_and_suppresses_small_counts(hub, world) -> None:
    for i in range(4):
        create_org(hub, f"s{i}")
        grant_credits(hub, "Gateway", f"s{i}", MICRO, reason="r", actor="tests")
    section = programmes_section(hub)["programmes"]
    gateway = next(p for p in section["programmes"] if p["name"] == "Gateway")
    assert gateway["suppressed"] and gateway["grants"] is None and gateway["granted"] is None
    assert gateway["partners"] == {"Fund": 50.0, "Bank": 50.0} and gateway["budget"] == 1000
    grant_credits(hub, "Gateway", "acme", MICRO, reason="r", actor="tests")
    gateway = next(p for p in programmes_section(hub)["programmes"]["programmes"] if p["name"] == "Gateway")
    assert gateway["grants"] == 5 and gateway["granted"] == 5 and gateway["used"] == 0


def test_a_statement_page_past_the_largest_row_number_is_a_clear_error(client, world) -> None:
    """Found by schemathesis: ``after`` past a 64-bit integer reached the database and answered 500."""
    for after in (2**63, 10**30):
        r = client.get(f"/hub/v1/organization/statements?after={after}", headers=_auth(world["admin"]))
        assert r.status_code in (400, 422) and "after" in r.text, (after, r.status_code, r.text[:200])
    r = client.get(f"/hub/v1/organization/statements?after={2**63 - 1}", headers=_auth(world["admin"]))
    assert r.status_code == 200 and r.json()["lines"] == []
