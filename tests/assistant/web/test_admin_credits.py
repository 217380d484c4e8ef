"""The fund office's pages in the staff console: programmes, grants, the applications queue, kinds of
organization, partners' staff; each action through the CLI's domain function, audited, staff-only and
CSRF-checked, and a refused caller changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from sovhub.accounts import create_org
from sovhub.credits.amounts import MICRO
from sovhub.credits.applications import submit_application
from sovhub.credits.ledger import Ledger
from sovhub.credits.programmes import ProgrammeRules, create_programme
from sovhub.credits.tables import (
    CreditApplication,
    CreditGrant,
    CreditNotice,
    CreditPartnerMember,
    CreditProgramme,
)
from sovhub.sovereignty.tables import AuditEntry
from sovhub.store.tables import Membership, Organization, User

from .conftest import PASSWORD, Web


@pytest.fixture
def staff(signed_in: Web) -> Web:
    with signed_in.hub.db.session() as s:
        s.get(User, signed_in.user_id).is_staff = True  # type: ignore[union-attr]
    create_org(signed_in.hub, "acme")
    return signed_in


def _post(web: Web, path: str, data: dict[str, Any]) -> Any:
    return web.client.post(path, data={"csrf_token": web.csrf("/admin/credits"), **data}, follow_redirects=False)


def _audit(web: Web, event: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    with web.hub.db.session() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.event == event).order_by(AuditEntry.seq))
        return [(r.actor, r.subject, json.loads(r.data)) for r in rows]


def _programme(web: Web, **rules: Any) -> CreditProgramme:
    return create_programme(web.hub, "Gateway", 100 * MICRO, [("Fund", 7000), ("Bank", 3000)],
                            ProgrammeRules(**rules), actor="tests")


def _counts(web: Web) -> tuple[int, ...]:
    with web.hub.db.session() as s:
        return tuple(int(s.scalar(select(func.count()).select_from(t)) or 0) for t in (
            CreditProgramme, CreditGrant, CreditPartnerMember, Membership, CreditNotice, AuditEntry))


def test_staff_create_a_programme_and_grant_from_the_page_audited_and_in_the_ledger(staff: Web) -> None:
    created = _post(staff, "/admin/credits/programmes", {
        "name": "Start-up Compute", "budget": "1000", "partners": "National Fund=60\nBank=40",
        "max_grant": "50", "validity_days": "30", "kinds": ["startup", "research"], "require_verified": ""})
    assert created.headers["location"] == "/admin/credits?done=programme_created"
    [(actor, _subject, data)] = _audit(staff, "programme.created")
    assert actor == f"user:{staff.user_id}" and data["partners"] == {"National Fund": 60.0, "Bank": 40.0}
    with staff.hub.db.session() as s:
        programme = s.scalar(select(CreditProgramme).where(CreditProgramme.name == "Start-up Compute"))
        assert programme is not None and programme.org_kinds == ["startup", "research"]
        assert programme.max_grant == 50 * MICRO and programme.grant_validity_days == 30
    # acme has no kind recorded: the programme is not open to it.
    refused = _post(staff, "/admin/credits/grants", {"programme": str(programme.id), "org": "acme", "credits": "20",
                                                     "reason": "panel 1"})
    assert refused.headers["location"] == "/admin/credits?error=kind_not_eligible#grants-title"
    assert _post(staff, "/admin/credits/kinds", {"org": "acme", "kind": "startup"}).headers["location"] == (
        "/admin/credits?done=kind_set#orgs-title")
    assert _audit(staff, "organization.kind_set")[0][2]["kind"] == "startup"
    granted = _post(staff, "/admin/credits/grants", {"programme": str(programme.id), "org": "acme", "credits": "20",
                                                     "reason": "panel 1"})
    assert granted.headers["location"] == "/admin/credits?done=grant_created#grants-title"
    assert _audit(staff, "grant.created")[0][0] == f"user:{staff.user_id}"
    for data, code in (({"credits": "60"}, "grant_too_large"), ({"credits": "0"}, "credits"),
                       ({"credits": "5", "reason": " "}, "reason"), ({"credits": "5", "org": "nobody"}, "org")):
        form = {"programme": str(programme.id), "org": "acme", "reason": "r", **data}
        assert _post(staff, "/admin/credits/grants", form).headers["location"] == (
            f"/admin/credits?error={code}#grants-title"), data
    for data, code in (({"partners": "Fund=60\nBank=30"}, "partners"), ({"partners": "Fund"}, "partners"),
                       ({"budget": "-3"}, "credits"), ({"name": "Start-up Compute"}, "exists"),
                       ({"opens": "2030-02-01", "closes": "2030-01-01"}, "window"), ({"kinds": "spaceship"}, "kind")):
        form = {"name": "Other", "budget": "10", "partners": "Fund=100", **data}
        assert _post(staff, "/admin/credits/programmes", form).headers["location"] == (
            f"/admin/credits?error={code}"), data
    page = staff.client.get("/admin/credits").text
    assert "Start-up Compute" in page and "National Fund" in page and "980" in page  # left to grant
    assert Ledger(staff.hub.db).verify() == []


def test_the_queue_decides_with_a_reason_and_the_conflict_rule(staff: Web) -> None:
    programme = _programme(staff, max_grant=50 * MICRO)
    with staff.hub.db.session() as s:
        acme_id = s.scalar(select(Organization.id).where(Organization.name == "acme"))
    first = submit_application(staff.hub, programme.id, acme_id, purpose="Legal model", amount=30 * MICRO,
                               actor="tests")
    assert f"Application {first.id}: acme to Gateway" in staff.client.get("/admin/credits").text
    url = f"/admin/credits/applications/{first.id}/decide"
    assert _post(staff, url, {"decision": "approve", "reason": ""}).headers["location"] == (
        "/admin/credits?error=reason#queue-title")
    approved = _post(staff, url, {"decision": "approve", "reason": "strong plan", "credits": "25"})
    assert approved.headers["location"] == "/admin/credits?done=approved#queue-title"
    with staff.hub.db.session() as s:
        row = s.get(CreditApplication, first.id)
        assert row is not None and row.status == "approved" and row.decided_by_user_id == staff.user_id
        assert s.get(CreditGrant, row.grant_id).amount == 25 * MICRO  # type: ignore[union-attr]
    assert _post(staff, url, {"decision": "reject", "reason": "again"}).headers["location"] == (
        "/admin/credits?error=already_decided#queue-title")
    [(actor, _s, data)] = _audit(staff, "application.decided")
    assert actor.startswith(f"user:{staff.user_id}:") and data["reason"] == "strong plan"
    # A staff member of the applying organization cannot decide on it.
    with staff.hub.db.session() as s:
        s.add(Membership(user_id=staff.user_id, org_id=acme_id, role="admin"))
    second = submit_application(staff.hub, programme.id, acme_id, purpose="More", amount=5 * MICRO, actor="tests")
    assert _post(staff, f"/admin/credits/applications/{second.id}/decide",
                 {"decision": "reject", "reason": "no"}).headers["location"] == (
        "/admin/credits?error=conflict_of_interest#queue-title")
    with staff.hub.db.session() as s:
        assert s.get(CreditApplication, second.id).status == "pending"  # type: ignore[union-attr]


def test_members_and_partner_staff_are_added_audited(staff: Web) -> None:
    _programme(staff)
    from sovhub.assistant.people import create_user

    create_user(staff.hub, "banker@bank.example", PASSWORD)
    with staff.hub.db.session() as s:
        bank = s.scalar(select(CreditPartnerMember).limit(1))
        assert bank is None
        from sovhub.credits.tables import CreditPartner

        bank_id = s.scalar(select(CreditPartner.id).where(CreditPartner.name == "Bank"))
    assert _post(staff, f"/admin/credits/partners/{bank_id}/members", {"email": "banker@bank.example"}).headers[
        "location"] == "/admin/credits?done=partner_member_added#partners-title"
    assert _post(staff, f"/admin/credits/partners/{bank_id}/members", {"email": "banker@bank.example"}).headers[
        "location"] == "/admin/credits?error=exists#partners-title"
    assert _post(staff, f"/admin/credits/partners/{bank_id}/members", {"email": "ghost@x.example"}).headers[
        "location"] == "/admin/credits?error=email#partners-title"
    assert _audit(staff, "partner.member_added")[0][:2] == (f"user:{staff.user_id}", f"partner:{bank_id}")
    assert _post(staff, "/admin/credits/members", {"org": "acme", "email": "banker@bank.example",
                                                   "role": "admin"}).headers["location"] == (
        "/admin/credits?done=member_set#orgs-title")
    assert _post(staff, "/admin/credits/members", {"org": "acme", "email": "banker@bank.example",
                                                   "role": "owner"}).headers["location"].endswith("error=failed#orgs-title")
    assert _audit(staff, "membership.set")[0][2]["role"] == "admin"
    assert "banker@bank.example" in staff.client.get("/admin/credits").text
    assert staff.client.get(f"/admin/credits/partners/{bank_id}").status_code == 200
    assert staff.client.get("/admin/credits/partners/999").status_code == 404


def test_the_fund_pages_refuse_signed_out_non_staff_and_forged_forms_and_change_nothing(signed_in: Web) -> None:
    programme = _programme(signed_in)
    create_org(signed_in.hub, "acme")
    with signed_in.hub.db.session() as s:
        acme_id = s.scalar(select(Organization.id).where(Organization.name == "acme"))
    application = submit_application(signed_in.hub, programme.id, acme_id, purpose="x", amount=MICRO, actor="t")
    posts = [
        ("/admin/credits/programmes", {"name": "Evil", "budget": "10", "partners": "Evil=100"}),
        ("/admin/credits/grants", {"programme": str(programme.id), "org": "acme", "credits": "5", "reason": "r"}),
        (f"/admin/credits/applications/{application.id}/decide", {"decision": "approve", "reason": "r"}),
        ("/admin/credits/kinds", {"org": "acme", "kind": "startup"}),
        ("/admin/credits/members", {"org": "acme", "email": signed_in.email, "role": "admin"}),
        ("/admin/credits/partners/1/members", {"email": signed_in.email}),
    ]
    before = _counts(signed_in)
    # Not staff: the pages and every form are refused.
    assert signed_in.client.get("/admin/credits").status_code == 403
    assert signed_in.client.get("/admin/credits/partners/1").status_code == 403
    assert signed_in.client.get(f"/admin/credits/programmes/{programme.id}").status_code == 403
    assert signed_in.client.get("/admin/credits/grants/1").status_code == 403
    token = signed_in.csrf()
    for path, data in posts:
        assert signed_in.client.post(path, data={"csrf_token": token, **data},
                                     follow_redirects=False).status_code == 403, path
    # Staff, but with a forged or missing form token.
    with signed_in.hub.db.session() as s:
        s.get(User, signed_in.user_id).is_staff = True  # type: ignore[union-attr]
    for path, data in posts:
        for forged in ({"csrf_token": "forged-" + token}, {}):
            assert signed_in.client.post(path, data={**forged, **data},
                                         follow_redirects=False).status_code == 403, path
    # Signed out: sent to sign in, nothing done.
    signed_in.client.cookies.clear()
    assert signed_in.client.get("/admin/credits", follow_redirects=False).headers["location"].startswith("/login")
    for path, data in posts:
        refused = signed_in.client.post(path, data={"csrf_token": token, **data}, follow_redirects=False)
        assert refused.status_code in (303, 403), path
        assert refused.status_code == 403 or refused.headers["location"].startswith("/login"), path
    assert _counts(signed_in) == before
    with signed_in.hub.db.session() as s:
        assert s.get(CreditApplication, application.id).status == "pending"  # type: ignore[union-attr]
        assert s.scalar(select(Organization.kind).where(Organization.id == acme_id)) is None


def test_a_programme_has_its_own_page_with_partners_grants_and_applications(staff: Web) -> None:
    programme = _programme(staff)
    from sovhub.credits.programmes import grant_credits

    grant_credits(staff.hub, "Gateway", "acme", 12 * MICRO, reason="pilot", actor="tests")
    with staff.hub.db.session() as s:
        acme_id = s.scalar(select(Organization.id).where(Organization.name == "acme"))
    submit_application(staff.hub, programme.id, acme_id, purpose="more", amount=3 * MICRO, actor="tests")
    page = staff.client.get(f"/admin/credits/programmes/{programme.id}")
    assert page.status_code == 200
    text = page.text
    assert "Fund" in text and "Bank" in text and "70 %" in text and "acme" in text
    assert ">12<" in text and ">88<" in text  # granted, left to grant
    assert "Waiting for a decision" in text
    overview = staff.client.get("/admin/credits").text
    assert f'href="/admin/credits/programmes/{programme.id}"' in overview and 'aria-label="Credits used per programme"' in overview
    assert staff.client.get("/admin/credits/programmes/999").status_code == 404
    with staff.hub.db.session() as s:
        grant_id = s.scalar(select(CreditGrant.id))
    assert f'href="/admin/credits/grants/{grant_id}"' in text
    grant_page = staff.client.get(f"/admin/credits/grants/{grant_id}").text
    assert "pilot" in grant_page and "grant · posted" in grant_page and ">12<" in grant_page
    assert staff.client.get("/admin/credits/grants/999").status_code == 404
    staff.client.cookies.clear()
    assert staff.client.get(f"/admin/credits/programmes/{programme.id}", follow_redirects=False).status_code == 303
