"""Fund staff's and partners' figures read from the ledger, on SQLite and PostgreSQL: exact to the micro-credit."""

from __future__ import annotations

import contextlib

import pytest

from sovhub.accounts import create_key, create_org
from sovhub.credits.amounts import MICRO
from sovhub.credits.dashboards import fund_overview, partner_dashboard, partner_statement, partner_statement_csv
from sovhub.credits.prices import set_price
from sovhub.credits.programmes import ProgrammeRules, create_programme, grant_credits
from sovhub.errors import NotFound
from sovhub.store.base import utcnow

from .test_enforcement import _client, settle_all

app_client = contextlib.contextmanager(_client)


def test_partner_figures_are_its_exact_parts_of_each_debit(hub) -> None:
    for org in ("acme", "beta"):
        create_org(hub, org)
    create_programme(hub, "Gateway", 100 * MICRO, [("Fund", 6667), ("Bank", 3333)], ProgrammeRules(), actor="t")
    create_programme(hub, "Other", 10 * MICRO, [("Fund", 10_000)], ProgrammeRules(), actor="t")
    set_price(hub, "echo", input_per_1m=1001 * MICRO, output_per_1m=3 * MICRO, actor="t")
    grant_credits(hub, "Gateway", "acme", 20 * MICRO, reason="r", actor="t")
    grant_credits(hub, "Other", "beta", 5 * MICRO, reason="r", actor="t")
    keys = {org: create_key(hub, org).secret for org in ("acme", "beta")}
    with app_client(hub) as client:
        for org, text in (("acme", "one two three"), ("acme", "four five"), ("beta", "six")):
            r = client.post("/v1/chat/completions", headers={"authorization": f"Bearer {keys[org]}"},
                            json={"model": "echo", "messages": [{"role": "user", "content": text}], "max_tokens": 4})
            assert r.status_code == 200, r.text
        settle_all(client, hub)
    overview = fund_overview(hub)
    partners = {p["name"]: p for p in overview["partners"]}
    gateway = next(p for p in overview["programmes"] if p["name"] == "Gateway")
    # acme: 3 + 2 prompt tokens at 1001 and 3 + 2 completion tokens at 3 micro-credits.
    used = 5 * 1001 + 5 * 3
    assert gateway["used"] == used and gateway["granted"] == 20 * MICRO and gateway["left"] == 80 * MICRO
    bank = partner_dashboard(hub, partners["Bank"]["id"], utcnow().strftime("%Y-%m"))
    fund = partner_dashboard(hub, partners["Fund"]["id"], utcnow().strftime("%Y-%m"))
    assert bank["used"] + next(p["used"] for p in fund["programmes"] if p["name"] == "Gateway") == used
    assert bank["month_total"] == bank["used"] and bank["by"]["organization"] == [("acme", bank["used"])]
    assert dict(bank["by"]["model"]) == {"echo": bank["used"]} and dict(bank["by"]["programme"]) == {
        "Gateway": bank["used"]}
    assert bank["contributed"] == 33_330_000 and partners["Bank"]["contributed"] == 33_330_000
    # Fund paid in two programmes: its beta spending is under Other, never under Bank's figures.
    assert {name for name, _ in fund["by"]["organization"]} == {"acme", "beta"}
    lines = partner_statement(hub, partners["Bank"]["id"], utcnow().strftime("%Y-%m"))
    assert len(lines["lines"]) == 2 and sum(line["partner_part"] for line in lines["lines"]) == bank["used"]
    assert all(line["organization"] == "acme" and line["request_id"] for line in lines["lines"])
    assert partner_statement_csv(lines).splitlines()[0] == "seq,ts,programme,organization,model,request_id,debit," \
        "partner_part"
    assert partner_dashboard(hub, partners["Bank"]["id"], "2001-01")["month_total"] == 0
    with pytest.raises(NotFound):
        partner_dashboard(hub, 999, "2001-01")


def test_a_partners_staff_member_is_exported_and_erased(hub) -> None:
    from sqlalchemy import select

    from sovhub.credits.dashboards import add_partner_member, partners_of
    from sovhub.credits.notices import add_notice, dismiss_notice
    from sovhub.credits.tables import CreditNotice
    from sovhub.sovereignty.rights import erase_user, export_user
    from sovhub.store.tables import User

    acme = create_org(hub, "acme")
    create_programme(hub, "Gateway", 10 * MICRO, [("Bank", 10_000)], ProgrammeRules(), actor="t")
    with hub.db.session() as s:
        user = User(email="banker@bank.example")
        s.add(user)
        s.flush()
        user_id = user.id
        notice = add_notice(s, acme.id, "low_balance", grant_id=1, programme="Gateway").id
    add_partner_member(hub, "Bank", "banker@bank.example", actor="t")
    dismiss_notice(hub, notice, acme.id, actor=f"user:{user_id}")
    assert export_user(hub, user_id)["credit_partners"] == ["Bank"]
    erase_user(hub, user_id)
    assert partners_of(hub, user_id) == []
    with hub.db.session() as s:
        assert s.get(CreditNotice, notice).dismissed_by == "erased"  # type: ignore[union-attr]
        assert s.scalar(select(User).where(User.id == user_id)) is None
