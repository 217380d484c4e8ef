"""Removing an organization's members (its admin, on /credits; staff, on the fund office page) and a
partner's staff: audited, never the last admin, and every wrong caller refused with nothing changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from sovhub.accounts import add_member, create_org
from sovhub.assistant.people import create_user
from sovhub.credits.amounts import MICRO
from sovhub.credits.dashboards import add_partner_member
from sovhub.credits.programmes import ProgrammeRules, create_programme
from sovhub.credits.tables import CreditPartner, CreditPartnerMember
from sovhub.settings import Settings
from sovhub.sovereignty.tables import AuditEntry
from sovhub.store.tables import Membership, User
from tests.conftest import make_settings

from .conftest import PASSWORD, Web


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return make_settings(data_dir, safety={"enabled": False}, embeddings_enabled=False)


@pytest.fixture
def world(web: Web) -> dict[str, Any]:
    hub = web.hub
    ids = {name: create_org(hub, name).id for name in ("acme", "beta")}
    people = {email: create_user(hub, email, PASSWORD) for email in (
        "bob@acme.example", "dave@acme.example", "carol@beta.example")}
    add_member(hub, "acme", web.email, "admin")  # ada
    add_member(hub, "acme", "bob@acme.example", "member")
    add_member(hub, "acme", "dave@acme.example", "member")
    add_member(hub, "beta", "carol@beta.example", "admin")
    add_member(hub, "beta", "bob@acme.example", "member")
    return {**ids, **people, "ada": web.user_id}


def _members(web: Web) -> set[tuple[int, int, str]]:
    with web.hub.db.session() as s:
        return {(m.org_id, m.user_id, m.role) for m in s.scalars(select(Membership))}


def _audit(web: Web, event: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    with web.hub.db.session() as s:
        return [(r.actor, r.subject, json.loads(r.data)) for r in s.scalars(
            select(AuditEntry).where(AuditEntry.event == event).order_by(AuditEntry.seq))]


def _remove(web: Web, org: int, user: int, token: str | None = None) -> Any:
    data = {} if token == "missing" else {"csrf_token": web.csrf("/credits") if token is None else token}
    return web.client.post(f"/credits/{org}/members/{user}/remove", data=data, follow_redirects=False)


def test_an_admin_removes_a_member_audited_and_never_the_last_admin(signed_in: Web, world) -> None:
    page = signed_in.client.get("/credits").text
    assert "bob@acme.example" in page and f'action="/credits/{world["acme"]}/members/{world["bob@acme.example"]}/remove"' in page
    removed = _remove(signed_in, world["acme"], world["bob@acme.example"])
    assert removed.status_code == 303 and removed.headers["location"] == "/credits?done=member_removed"
    assert (world["acme"], world["bob@acme.example"], "member") not in _members(signed_in)
    assert (world["beta"], world["bob@acme.example"], "member") in _members(signed_in)  # only acme's membership
    assert _audit(signed_in, "membership.removed") == [
        (f"user:{world['ada']}", f"org:{world['acme']}", {"user": world["bob@acme.example"], "role": "member"})]
    # Ada is acme's only admin: she cannot remove herself, and nothing changes.
    before = _members(signed_in)
    last = _remove(signed_in, world["acme"], world["ada"])
    assert last.headers["location"] == "/credits?error=last_admin" and _members(signed_in) == before
    assert "last admin" in signed_in.client.get(last.headers["location"]).text
    # Once dave is an admin too, she may leave.
    add_member(signed_in.hub, "acme", "dave@acme.example", "admin")
    assert _remove(signed_in, world["acme"], world["ada"]).headers["location"] == "/credits?done=member_removed"
    assert (world["acme"], world["ada"], "admin") not in _members(signed_in)


def test_no_one_else_removes_a_member_and_a_refusal_changes_nothing(web: Web, world) -> None:
    acme, bob = world["acme"], world["bob@acme.example"]
    before, audit_before = _members(web), _audit(web, "membership.removed")
    # A plain member of acme.
    web.sign_in("dave@acme.example")
    assert _remove(web, acme, bob).status_code == 403
    # An admin of another organization: not for acme, and beta's own path cannot reach acme's membership.
    web.sign_in("carol@beta.example")
    assert _remove(web, acme, bob).status_code == 403
    assert _remove(web, acme, world["ada"]).status_code == 403
    assert _remove(web, world["beta"], world["ada"]).headers["location"] == "/credits?error=not_member"
    # Acme's admin, without the form's token (missing, empty, forged, another person's).
    web.sign_in("carol@beta.example")
    carols = web.csrf("/credits")
    web.sign_in()
    for token in ("missing", "", "forged", carols):
        assert _remove(web, acme, bob, token).status_code == 403, token
    # Signed out.
    web.client.cookies.clear()
    out = web.client.post(f"/credits/{acme}/members/{bob}/remove", data={"csrf_token": carols},
                          follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"].startswith("/login")
    assert _members(web) == before and _audit(web, "membership.removed") == audit_before


def test_staff_remove_members_and_partner_staff_from_the_fund_office(signed_in: Web, world) -> None:
    hub = signed_in.hub
    with hub.db.session() as s:
        s.get(User, signed_in.user_id).is_staff = True  # type: ignore[union-attr]
    create_programme(hub, "Gateway", 100 * MICRO, [("Bank", 10_000)], ProgrammeRules(), actor="tests")
    add_partner_member(hub, "Bank", "carol@beta.example", actor="tests")
    with hub.db.session() as s:
        bank = s.scalar(select(CreditPartner.id).where(CreditPartner.name == "Bank"))
    page = signed_in.client.get("/admin/credits").text
    assert 'action="/admin/credits/members/remove"' in page and f'/admin/credits/partners/{bank}/members/remove' in page

    def post(path: str, **data: str) -> str:
        token = signed_in.csrf("/admin/credits")
        return str(signed_in.client.post(path, data={"csrf_token": token, **data},
                                         follow_redirects=False).headers["location"])

    assert post("/admin/credits/members/remove", org="acme", email="dave@acme.example") == (
        "/admin/credits?done=member_removed#orgs-title")
    assert post("/admin/credits/members/remove", org="acme", email="dave@acme.example") == (
        "/admin/credits?error=not_member#orgs-title")
    assert post("/admin/credits/members/remove", org="beta", email="carol@beta.example") == (
        "/admin/credits?error=last_admin#orgs-title")
    assert (world["beta"], world["carol@beta.example"], "admin") in _members(signed_in)
    assert post(f"/admin/credits/partners/{bank}/members/remove", email="carol@beta.example") == (
        "/admin/credits?done=partner_member_removed#partners-title")
    with hub.db.session() as s:
        assert s.scalar(select(CreditPartnerMember).limit(1)) is None
    assert post(f"/admin/credits/partners/{bank}/members/remove", email="carol@beta.example") == (
        "/admin/credits?error=not_member#partners-title")
    assert [a[:2] for a in _audit(signed_in, "partner.member_removed")] == [
        (f"user:{signed_in.user_id}", f"partner:{bank}")]
    assert _audit(signed_in, "membership.removed")[0][0] == f"user:{signed_in.user_id}"
    # Carol no longer reads the partner's dashboard.
    signed_in.sign_in("carol@beta.example")
    assert signed_in.client.get(f"/partner/{bank}").status_code == 403
