"""Credits in the web app: an organization's admin applies, its members read the decision (and a low
balance) in their own language; a partner's staff read their own partner's dashboard and statement only."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from sovhub.accounts import add_member, create_key, create_org
from sovhub.assistant.people import create_user
from sovhub.credits.amounts import MICRO, format_credits
from sovhub.credits.applications import decide
from sovhub.credits.control import Credits
from sovhub.credits.dashboards import PARTNER_COLUMNS, add_partner_member
from sovhub.credits.eligibility import set_org_kind
from sovhub.credits.prices import set_price
from sovhub.credits.programmes import ProgrammeRules, create_programme, grant_credits
from sovhub.credits.tables import CreditApplication, CreditNotice, CreditPartner, CreditTransfer
from sovhub.settings import Settings
from sovhub.sovereignty.tables import AuditEntry
from sovhub.store.tables import Organization, User
from tests.conftest import make_settings

from .conftest import PASSWORD, Web


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return make_settings(data_dir, safety={"enabled": False}, embeddings_enabled=False,
                         credits={"low_balance_percent": 50})


@pytest.fixture
def world(web: Web) -> dict[str, Any]:
    hub = web.hub
    ids = {name: create_org(hub, name).id for name in ("acme", "beta")}
    gateway = create_programme(hub, "Gateway", 1000 * MICRO, [("Fund", 7000), ("Bank", 3000)],
                               ProgrammeRules(max_grant=100 * MICRO), actor="tests")
    research = create_programme(hub, "Research", 1000 * MICRO, [("Foundation", 10_000)],
                                ProgrammeRules(org_kinds=("research",)), actor="tests")
    staff_id = create_user(hub, "officer@fund.example", PASSWORD, staff=True)
    add_member(hub, "acme", web.email, "admin")
    return {"acme": ids["acme"], "beta": ids["beta"], "gateway": gateway.id, "research": research.id,
            "staff": staff_id}


def _set_locale(web: Web, locale: str) -> None:
    with web.hub.db.session() as s:
        s.get(User, web.user_id).locale = locale  # type: ignore[union-attr]


def _apply(web: Web, programme: int, org: int, credits: str = "5", **extra: str) -> Any:
    return web.client.post("/credits/apply", data={"csrf_token": web.csrf("/credits"), "programme": str(programme),
                                                   "org": str(org), "purpose": "Train a legal model",
                                                   "credits": credits, **extra}, follow_redirects=False)


def _audit(web: Web, event: str) -> list[tuple[str, dict[str, Any]]]:
    with web.hub.db.session() as s:
        return [(r.actor, json.loads(r.data)) for r in s.scalars(
            select(AuditEntry).where(AuditEntry.event == event).order_by(AuditEntry.seq))]


def _applications(web: Web) -> int:
    with web.hub.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(CreditApplication)) or 0)


def test_an_admin_applies_and_the_members_read_the_decision_in_their_own_language(signed_in: Web, world) -> None:
    page = signed_in.client.get("/credits").text
    assert "Gateway" in page and 'action="/credits/apply"' in page
    applied = _apply(signed_in, world["gateway"], world["acme"])
    assert applied.headers["location"] == "/credits?done=applied"
    assert _audit(signed_in, "application.submitted")[0][0] == f"user:{signed_in.user_id}"
    assert _apply(signed_in, world["gateway"], world["acme"]).headers["location"] == (
        "/credits?error=application_pending")
    assert _apply(signed_in, world["gateway"], world["acme"], credits="500").headers["location"] == (
        "/credits?error=grant_too_large")
    with signed_in.hub.db.session() as s:
        first = s.scalar(select(CreditApplication.id))
    decide(signed_in.hub, first, "approved", reason="Сильний план", reviewer_id=world["staff"])
    _set_locale(signed_in, "uk")
    page = signed_in.client.get("/credits")
    assert page.headers["content-language"] == "uk"
    assert "Вашу заявку до програми Gateway схвалено: надано 5 кредитів." in page.text
    assert "Сильний план" in page.text and "Залишок: 5 кредитів" in page.text
    with signed_in.hub.db.session() as s:
        notice = s.scalars(select(CreditNotice)).one()
    dismissed = signed_in.client.post(f"/credits/notices/{notice.id}/dismiss", data={
        "csrf_token": signed_in.csrf("/credits"), "org": str(world["acme"])}, follow_redirects=False)
    assert dismissed.headers["location"] == "/credits?done=dismissed"
    assert "Вашу заявку" not in signed_in.client.get("/credits").text
    assert _audit(signed_in, "notice.dismissed")[0][0] == f"user:{signed_in.user_id}"
    # A rejection, read by a member who reads German.
    _apply(signed_in, world["gateway"], world["acme"], credits="7")
    with signed_in.hub.db.session() as s:
        second = s.scalar(select(CreditApplication.id).where(CreditApplication.status == "pending"))
    decide(signed_in.hub, second, "rejected", reason="Budget erschöpft", reviewer_id=world["staff"])
    _set_locale(signed_in, "de")
    page = signed_in.client.get("/credits").text
    assert "Ihr Antrag an Gateway wurde abgelehnt." in page and "Budget erschöpft" in page
    assert "Abgelehnt" in page  # the application's status in the table


def test_eligibility_by_kind_is_enforced_when_applying(signed_in: Web, world) -> None:
    assert _apply(signed_in, world["research"], world["acme"]).headers["location"] == (
        "/credits?error=kind_not_eligible")
    set_org_kind(signed_in.hub, "acme", "startup", actor="tests")
    assert _apply(signed_in, world["research"], world["acme"]).headers["location"] == (
        "/credits?error=kind_not_eligible")
    set_org_kind(signed_in.hub, "acme", "Research", actor="tests")
    assert _apply(signed_in, world["research"], world["acme"]).headers["location"] == "/credits?done=applied"


def test_applying_and_notices_refuse_the_wrong_callers_and_change_nothing(signed_in: Web, world) -> None:
    hub = signed_in.hub
    grant_credits(hub, "Gateway", "beta", 5 * MICRO, reason="r", actor="tests")
    before = _applications(signed_in)
    # Not a member of beta; a plain member of acme cannot commit it.
    assert _apply(signed_in, world["gateway"], world["beta"]).status_code == 403
    create_user(hub, "second-admin@acme.example", PASSWORD)  # acme keeps an admin while ada is demoted
    add_member(hub, "acme", "second-admin@acme.example", "admin")
    add_member(hub, "acme", signed_in.email, "member")
    assert _apply(signed_in, world["gateway"], world["acme"]).status_code == 403
    assert "An admin of your organization applies for it." in signed_in.client.get("/credits").text
    add_member(hub, "acme", signed_in.email, "admin")
    for forged in ({"csrf_token": "forged"}, {}):
        refused = signed_in.client.post("/credits/apply", data={**forged, "programme": str(world["gateway"]),
                                        "org": str(world["acme"]), "purpose": "x", "credits": "1"},
                                        follow_redirects=False)
        assert refused.status_code == 403
    with hub.db.session() as s:
        beta_grant = s.scalar(select(CreditNotice.id))  # none yet
        assert beta_grant is None
        from sovhub.credits.notices import add_notice

        beta_notice = add_notice(s, world["beta"], "application_rejected", programme="Gateway", reason="no").id
    token = signed_in.csrf("/credits")
    assert signed_in.client.post(f"/credits/notices/{beta_notice}/dismiss", data={
        "csrf_token": token, "org": str(world["beta"])}, follow_redirects=False).status_code == 403
    assert signed_in.client.post(f"/credits/notices/{beta_notice}/dismiss", data={
        "csrf_token": token, "org": str(world["acme"])}, follow_redirects=False).headers["location"] == (
        "/credits?error=not_found")
    assert signed_in.client.get(f"/credits/{world['beta']}/statement").status_code == 403
    own = signed_in.client.get(f"/credits/{world['acme']}/statement")
    assert own.status_code == 200 and own.text.startswith("seq,ts,kind,request_id,model,key,batch,")
    signed_in.client.cookies.clear()
    assert signed_in.client.get("/credits", follow_redirects=False).headers["location"].startswith("/login")
    out = signed_in.client.post("/credits/apply", data={"csrf_token": token, "programme": str(world["gateway"]),
                                "org": str(world["acme"]), "purpose": "x", "credits": "1"}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"].startswith("/login")
    assert _applications(signed_in) == before
    with hub.db.session() as s:
        assert s.get(CreditNotice, beta_notice).dismissed_at is None  # type: ignore[union-attr]


def _spend(web: Web, org: str, times: int, max_tokens: int = 1) -> list[Any]:
    secret = create_key(web.hub, org).secret
    out = []
    for _ in range(times):
        r = web.client.post("/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                            json={"model": "echo", "messages": [{"role": "user", "content": "hello world"}],
                                  "max_tokens": max_tokens})
        out.append(r)
    credits = web.hub.services.get(Credits)

    async def settle() -> None:
        await credits.flush_settlements()
        await credits.writer.drain()

    web.client.portal.call(settle)  # type: ignore[union-attr]
    return out


def _low_notices(web: Web) -> list[int | None]:
    with web.hub.db.session() as s:
        return list(s.scalars(select(CreditNotice.grant_id).where(CreditNotice.kind == "low_balance")))


def test_a_low_balance_is_noticed_once_per_crossing_in_the_web_app(signed_in: Web, world) -> None:
    hub = signed_in.hub
    set_price(hub, "echo", input_per_1m=1_000_000 * MICRO, output_per_1m=1_000_000 * MICRO, actor="tests")
    grant = grant_credits(hub, "Gateway", "acme", 10 * MICRO, reason="pilot", actor="tests")
    credits = hub.services.get(Credits)
    credits.state.load()
    first = _spend(signed_in, "acme", 1)[0]
    assert first.status_code == 200 and "x-sovhub-credits-low" not in first.headers
    # The housekeeping loop checks every second too: whichever check sees the crossing, it is noticed once.
    signed_in.client.portal.call(credits.check_low_balances)  # type: ignore[union-attr]
    assert _low_notices(signed_in) == []
    _spend(signed_in, "acme", 1)
    for _ in range(3):
        signed_in.client.portal.call(credits.check_low_balances)  # type: ignore[union-attr]
    assert _low_notices(signed_in) == [grant.id]
    third = _spend(signed_in, "acme", 1)[0]
    assert third.headers["x-sovhub-credits-low"] == str(grant.id)
    _set_locale(signed_in, "pl")
    page = signed_in.client.get("/credits").text
    assert f"Grant {grant.id} z programu Gateway się kończy" in page and "Na wyczerpaniu" in page
    assert len(_audit(signed_in, "credits.low_balance")) == 1


def test_partner_staff_see_only_their_own_partners_figures(web: Web, world) -> None:
    hub = web.hub
    set_price(hub, "echo", input_per_1m=1000 * MICRO, output_per_1m=1000 * MICRO, actor="tests")
    grant_credits(hub, "Gateway", "acme", 50 * MICRO, reason="pilot", actor="tests")
    set_org_kind(hub, "beta", "research", actor="tests")
    grant_credits(hub, "Research", "beta", 50 * MICRO, reason="pilot", actor="tests")
    hub.services.get(Credits).state.load()
    answers = _spend(web, "acme", 3, max_tokens=5) + _spend(web, "beta", 2, max_tokens=5)
    assert all(r.status_code == 200 for r in answers)
    with hub.db.session() as s:
        partners = dict(s.execute(select(CreditPartner.name, CreditPartner.id)).all())
        splits = [t.split for t in s.scalars(select(CreditTransfer).where(CreditTransfer.split.is_not(None)))]
    bank_part = sum(int(x.get(str(partners["Bank"]), 0)) for x in splits if x)
    assert bank_part > 0
    create_user(hub, "banker@bank.example", PASSWORD)
    create_user(hub, "giver@foundation.example", PASSWORD)
    add_partner_member(hub, "Bank", "banker@bank.example", actor="tests")
    add_partner_member(hub, "Foundation", "giver@foundation.example", actor="tests")
    web.sign_in("banker@bank.example")
    assert web.client.get("/partner", follow_redirects=False).headers["location"] == f"/partner/{partners['Bank']}"
    mine = web.client.get(f"/partner/{partners['Bank']}").text
    assert "acme" in mine and "echo" in mine and "Gateway" in mine and format_credits(bank_part) in mine
    assert "beta" not in mine and "Research" not in mine
    assert web.client.get(f"/partner/{partners['Foundation']}").status_code == 403
    assert web.client.get(f"/partner/{partners['Foundation']}/statement").status_code == 403
    csv_text = web.client.get(f"/partner/{partners['Bank']}/statement").text
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert list(rows[0]) == list(PARTNER_COLUMNS) and {r["organization"] for r in rows} == {"acme"}
    assert sum(round(float(r["partner_part"]) * MICRO) for r in rows) == bank_part
    assert all(r["request_id"] for r in rows)
    web.sign_in("giver@foundation.example")
    theirs = web.client.get(f"/partner/{partners['Foundation']}").text
    assert "beta" in theirs and "acme" not in theirs
    assert web.client.get(f"/partner/{partners['Bank']}").status_code == 403
    web.sign_in()  # ada works for no partner
    assert web.client.get("/partner").status_code == 403
    assert web.client.get(f"/partner/{partners['Bank']}").status_code == 403
    web.client.cookies.clear()
    assert web.client.get(f"/partner/{partners['Bank']}", follow_redirects=False).headers[
        "location"].startswith("/login")
    with hub.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Organization)) == 2
