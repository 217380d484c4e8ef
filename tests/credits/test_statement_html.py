"""The monthly statement in HTML is written in the reader's language, with charts of use per day, model and key;
CSV and JSON stay machine formats (the same in every language)."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sovhub.accounts import create_key, create_org
from sovhub.credits.amounts import MICRO
from sovhub.credits.control import Credits
from sovhub.credits.prices import set_price
from sovhub.credits.programmes import ProgrammeRules, create_programme, grant_credits
from sovhub.hub import Hub, build_hub
from sovhub.store.base import utcnow
from tests.conftest import make_settings

from .test_enforcement import _client, settle_all

_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.S)


@pytest.fixture
def hub(data_dir: Path, database_url: str | None) -> Iterator[Hub]:
    # With the assistant's plugin: its UI catalogs are the statement's words.
    h = build_hub(make_settings(data_dir, database_url=database_url, safety={"enabled": False, "warm_up": False},
                                embeddings_enabled=False))
    yield h
    h.close()


@pytest.fixture
def world(hub: Hub) -> dict[str, Any]:
    create_org(hub, "acme")
    create_programme(hub, "Gateway", 1000 * MICRO, [("Fund", 10_000)], ProgrammeRules(), actor="tests")
    set_price(hub, "echo", input_per_1m=1000 * MICRO, output_per_1m=1000 * MICRO, actor="tests")
    grant_credits(hub, "Gateway", "acme", 10 * MICRO, reason="pilot", actor="tests")
    first, second = create_key(hub, "acme"), create_key(hub, "acme", name="second")
    return {"first": first, "second": second}


@pytest.fixture
def client(hub: Hub, world: dict[str, Any]) -> Iterator[TestClient]:
    yield from _client(hub)


def _statement(client: TestClient, secret: str, language: str | None = None, fmt: str = "html") -> Any:
    headers = {"authorization": f"Bearer {secret}"}
    if language:
        headers["accept-language"] = language
    return client.get(f"/hub/v1/organization/statements?format={fmt}", headers=headers)


def _use(hub: Hub, client: TestClient, world: dict[str, Any]) -> None:
    hub.services.get(Credits).state.load()
    for rid, key in (("req-a", "first"), ("req-b", "second"), ("req-c", "second")):
        r = client.post("/v1/chat/completions",
                        headers={"authorization": f"Bearer {world[key].secret}", "x-request-id": rid},
                        json={"model": "echo", "messages": [{"role": "user", "content": "one two three"}],
                              "max_tokens": 5})
        assert r.status_code == 200, r.text
    settle_all(client, hub)


def test_the_html_statement_is_in_the_readers_language_with_charts_per_day_model_and_key(hub, client, world) -> None:
    _use(hub, client, world)
    page = _statement(client, world["first"].secret, "uk-UA,uk;q=0.9,en;q=0.5")
    assert page.status_code == 200 and page.headers["content-language"] == "uk"
    html = page.text
    assert '<html lang="uk" dir="ltr">' in html
    assert "Виписка про кредити за" in html and "Використані кредити за днями" in html
    assert "Використані кредити за моделями" in html and "Використані кредити за API-ключами" in html
    assert "Credits used per" not in html and "Every grant received" not in html  # no English left
    # Three charts, each an accessible SVG with a translated title and description, and a table.
    assert html.count('role="img"') == 3 and html.count('<figure class="chart">') == 3
    assert "Стовпчикова діаграма кредитів, використаних кожного дня місяця" in html
    # Every line traces to its request id.
    for rid in ("req-a", "req-b", "req-c"):
        assert f"<code>{rid}</code>" in html
    # Per day: every day of the month up to today, today's use exact; per key: both keys, labelled.
    today = utcnow().date()
    days = re.findall(r'<th scope="row">(\d{4}-\d{2}-\d{2})</th><td>([^<]*)</td>', html)
    assert [d for d, _ in days] == [f"{today:%Y-%m}-{n:02d}" for n in range(1, today.day + 1)]
    assert dict(days)[today.isoformat()] == "0.018" and all(v == "0" for d, v in days if d != today.isoformat())
    first, second = world["first"].id, world["second"].id
    assert f'<th scope="row">Ключ {first}</th><td>0.006</td>' in html
    assert f'<th scope="row">Ключ {second}</th><td>0.012</td>' in html
    assert '<th scope="row">echo</th><td>0.018</td>' in html
    assert "<script" not in html


def test_the_page_allows_exactly_its_charts_style_blocks(hub, client, world) -> None:
    _use(hub, client, world)
    page = _statement(client, world["first"].secret)
    policy = page.headers["content-security-policy"]
    style_src = next(p for p in policy.split("; ") if p.startswith("style-src")).split()[1:]
    blocks = _STYLE.findall(page.text)
    assert len(blocks) == 3
    hashes = {"'sha256-" + base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() + "'" for b in blocks}
    assert set(style_src) == {"'self'", *hashes}
    assert "'unsafe-inline'" not in policy and "script-src 'self'" in policy


def test_languages_follow_accept_language_and_fall_back_to_english(hub, client, world) -> None:
    _use(hub, client, world)
    assert "Credit-Auszug" in _statement(client, world["first"].secret, "de").text
    assert "كشف الأرصدة" in (ar := _statement(client, world["first"].secret, "ar").text) and 'dir="rtl"' in ar
    english = _statement(client, world["first"].secret, "xx").text
    assert "Credits statement" in english and "Credits used per day" in english


def test_csv_and_json_are_the_same_in_every_language(hub, client, world) -> None:
    _use(hub, client, world)
    secret = world["first"].secret
    assert _statement(client, secret, "uk", "csv").text == _statement(client, secret, "en", "csv").text
    body = _statement(client, secret, "ja", "json").json()
    assert body == _statement(client, secret, None, "json").json()
    assert [(line["request_id"], line["note"], line["note_code"]) for line in body["lines"]
            if line["kind"] == "usage"] == [("req-a", "", None), ("req-b", "", None), ("req-c", "", None)]


def test_a_month_without_use_says_so_and_draws_nothing(hub, client, world) -> None:
    page = client.get("/hub/v1/organization/statements?format=html&month=2020-01",
                      headers={"authorization": f"Bearer {world['first'].secret}", "accept-language": "pl"})
    assert page.status_code == 200 and "W tym miesiącu nic nie zużyto." in page.text
    assert 'role="img"' not in page.text and "style-src 'self';" in page.headers["content-security-policy"]
