"""Charts of use per day: an organization's statement in its reader's language, a programme's page for staff,
a partner's dashboard; server-drawn SVG with the numbers in a table, allowed by the page's CSP."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from sovhub.accounts import add_member, create_key, create_org
from sovhub.assistant.people import create_user
from sovhub.credits.amounts import MICRO, format_credits
from sovhub.credits.control import Credits
from sovhub.credits.dashboards import add_partner_member, programme_use_per_day
from sovhub.credits.prices import set_price
from sovhub.credits.programmes import ProgrammeRules, create_programme, grant_credits
from sovhub.credits.tables import CreditPartner, CreditTransfer
from sovhub.settings import Settings
from sovhub.store.base import utcnow
from sovhub.store.tables import User
from tests.conftest import make_settings

from .conftest import PASSWORD, Web

_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.S)


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return make_settings(data_dir, safety={"enabled": False}, embeddings_enabled=False)


@pytest.fixture
def world(web: Web) -> dict[str, Any]:
    hub = web.hub
    acme = create_org(hub, "acme").id
    gateway = create_programme(hub, "Gateway", 1000 * MICRO, [("Fund", 7000), ("Bank", 3000)], ProgrammeRules(),
                               actor="tests")
    set_price(hub, "echo", input_per_1m=1000 * MICRO, output_per_1m=1000 * MICRO, actor="tests")
    grant_credits(hub, "Gateway", "acme", 50 * MICRO, reason="pilot", actor="tests")
    hub.services.get(Credits).state.load()
    add_member(hub, "acme", web.email, "member")
    secret = create_key(hub, "acme").secret
    for _ in range(3):
        r = web.client.post("/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                            json={"model": "echo", "messages": [{"role": "user", "content": "hello world"}],
                                  "max_tokens": 5})
        assert r.status_code == 200
    credits = hub.services.get(Credits)

    async def settle() -> None:
        await credits.flush_settlements()
        await credits.writer.drain()

    web.client.portal.call(settle)  # type: ignore[union-attr]
    with hub.db.session() as s:
        used = sum(t.amount for t in s.scalars(select(CreditTransfer).where(
            CreditTransfer.code == "usage", CreditTransfer.kind.in_(("post", "posted")))))
        splits = [t.split for t in s.scalars(select(CreditTransfer).where(CreditTransfer.split.is_not(None)))]
        bank = s.scalar(select(CreditPartner.id).where(CreditPartner.name == "Bank"))
    assert used > 0
    return {"acme": acme, "gateway": gateway.id, "used": used, "bank": bank,
            "bank_part": sum(int((x or {}).get(str(bank), 0)) for x in splits)}


def _day_rows(html: str) -> dict[str, str]:
    return dict(re.findall(r'<th scope="row">(\d{4}-\d{2}-\d{2})</th><td>([^<]*)</td>', html))


def _allowed(response: Any) -> None:
    """Every <style> block on the page is allowed by its hash, and nothing else inline is."""
    policy = response.headers["content-security-policy"]
    style_src = set(next(p for p in policy.split("; ") if p.startswith("style-src")).split()[1:])
    blocks = _STYLE.findall(response.text)
    assert blocks
    assert style_src == {"'self'"} | {
        "'sha256-" + base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() + "'" for b in blocks}


def test_a_members_statement_page_is_in_their_language_with_charts(signed_in: Web, world) -> None:
    with signed_in.hub.db.session() as s:
        s.get(User, signed_in.user_id).locale = "fr"  # type: ignore[union-attr]
    assert "format=html" in signed_in.client.get("/credits").text  # the page links to it
    page = signed_in.client.get(f"/credits/{world['acme']}/statement?format=html")
    assert page.status_code == 200 and page.headers["content-language"] == "fr"
    assert "Relevé de crédits" in page.text and "Crédits utilisés par jour" in page.text
    assert page.text.count('role="img"') == 3
    assert _day_rows(page.text)[utcnow().date().isoformat()] == format_credits(world["used"])
    _allowed(page)


def test_a_programme_page_charts_use_per_day_and_what_was_granted_used_and_left(signed_in: Web, world) -> None:
    hub = signed_in.hub
    with hub.db.session() as s:
        s.get(User, signed_in.user_id).is_staff = True  # type: ignore[union-attr]
    month = utcnow().strftime("%Y-%m")
    days = programme_use_per_day(hub, world["gateway"], month)
    assert days[-1] == (utcnow().date().isoformat(), world["used"]) and len(days) == utcnow().day
    assert sum(v for _, v in days) == world["used"]
    assert sum(v for _, v in programme_use_per_day(hub, world["gateway"], "2020-02")) == 0
    page = signed_in.client.get(f"/admin/credits/programmes/{world['gateway']}")
    assert page.status_code == 200
    assert "Credits used per day" in page.text and "What was granted, used and left" in page.text
    assert _day_rows(page.text)[utcnow().date().isoformat()] == format_credits(world["used"])
    assert f'<th scope="row">Used</th><td>{format_credits(world["used"])}</td>' in page.text
    assert '<th scope="row">Budget</th><td>1000</td>' in page.text
    _allowed(page)
    earlier = signed_in.client.get(f"/admin/credits/programmes/{world['gateway']}?month=2020-02").text
    assert "Nothing was used this month." in earlier


def test_a_partner_dashboard_charts_its_part_per_day(web: Web, world) -> None:
    create_user(web.hub, "banker@bank.example", PASSWORD)
    add_partner_member(web.hub, "Bank", "banker@bank.example", actor="tests")
    web.sign_in("banker@bank.example")
    page = web.client.get(f"/partner/{world['bank']}")
    assert "share paid for, per day" in page.text and page.text.count('role="img"') >= 1
    rows = _day_rows(page.text)
    assert rows[utcnow().date().isoformat()] == format_credits(world["bank_part"]) and world["bank_part"] > 0
    _allowed(page)
