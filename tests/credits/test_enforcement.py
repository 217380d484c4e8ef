"""Credits at admission: reserve the highest cost, post the real one, refuse in OpenAI's quota shape."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sovhub.accounts import create_key, create_org
from sovhub.credits.amounts import MICRO
from sovhub.credits.control import Credits
from sovhub.credits.ledger import Ledger
from sovhub.credits.prices import set_price
from sovhub.credits.programmes import ProgrammeRules, create_programme, grant_credits
from sovhub.credits.tables import CreditTransfer
from sovhub.hub import Hub
from sovhub.store.base import utcnow
from tests.conftest import add_fake_backend
from tests.fakes import FakePlugin


def _client(hub: Hub) -> Iterator[TestClient]:
    from sovhub.app import create_app

    plugin = FakePlugin()
    hub.pm.register(plugin, name="tests.fake")
    add_fake_backend(hub, "fake1", ["echo", "other"])
    try:
        with TestClient(create_app(hub)) as client:
            yield client
    finally:
        hub.pm.unregister(name="tests.fake")


@pytest.fixture
def setup(hub: Hub) -> dict[str, Any]:
    create_org(hub, "acme")
    create_org(hub, "free")
    programme = create_programme(hub, "Compute 2027", 1000 * MICRO, [("Fund", 6000), ("Bank", 4000)],
                                 ProgrammeRules(), actor="tests")
    # 1000 credits per million input tokens: 1000 micro-credits a token; output twice that.
    set_price(hub, "echo", input_per_1m=1000 * MICRO, output_per_1m=2000 * MICRO, actor="tests")
    return {"programme": programme, "acme": create_key(hub, "acme").secret, "free": create_key(hub, "free").secret}


@pytest.fixture
def client(hub: Hub, setup: dict[str, Any]) -> Iterator[TestClient]:
    yield from _client(hub)


def _auth(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def _chat(client: TestClient, secret: str, text: str = "hello world", max_tokens: int = 10, **extra: Any) -> Any:
    return client.post("/v1/chat/completions", headers=_auth(secret), json={
        "model": extra.pop("model", "echo"), "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens, **extra})


def settle_all(client: TestClient, hub: Hub) -> None:
    credits = hub.services.get(Credits)

    async def run() -> None:
        await credits.flush_settlements()
        await credits.writer.drain()

    client.portal.call(run)  # type: ignore[union-attr]


def _grant(hub: Hub, credits: str, **kw: Any) -> int:
    from sovhub.credits.amounts import parse_credits

    grant = grant_credits(hub, "Compute 2027", "acme", parse_credits(credits), reason="pilot", actor="tests", **kw)
    hub.services.get(Credits).state.load()
    return grant.id


def test_an_org_without_a_grant_is_not_billed_unless_credits_are_required(client, setup) -> None:
    r = _chat(client, setup["free"])
    assert r.status_code == 200 and "x-sovhub-credits-remaining" not in r.headers


def test_reserve_the_highest_cost_then_post_the_real_one_split_by_partners(hub, client, setup) -> None:
    grant_id = _grant(hub, "1")
    r = client.post(
        "/v1/chat/completions", headers={**_auth(setup["acme"]), "x-request-id": "req-abc-1"},
        json={"model": "echo", "messages": [{"role": "user", "content": "hello world"}], "max_tokens": 10})
    assert r.status_code == 200, r.text
    # Reserved: (10 x 1 + 11 // 4 prompt) tokens at the higher price, 2000 micro-credits each.
    assert r.headers["x-sovhub-credits-remaining"] == "0.976"
    settle_all(client, hub)
    ledger = hub.services.get(Ledger)
    account = ledger.account_id("grant", grant_id)
    # Real: 2 prompt tokens x 1000 + 2 completion tokens x 2000.
    balance = ledger.balances([account])[account]
    assert (balance.debits_posted, balance.debits_pending) == (6000, 0)
    with hub.db.session() as s:
        posted = s.scalars(select(CreditTransfer).where(CreditTransfer.kind == "post")).one()
        parts = dict(posted.split)
    assert posted.request_id == "req-abc-1" and posted.amount == 6000 and posted.model == "echo"
    assert posted.details["prompt"] == 2 and posted.details["completion"] == 2
    assert sorted(parts.values()) == [2400, 3600]
    # The live balance agrees with the ledger.
    r = client.get("/hub/v1/organization/credits", headers=_auth(setup["acme"]))
    body = r.json()
    assert body["object"] == "organization.credits" and body["balance"] == 0.994
    assert body["grants"][0] | {"expires_at": None} == {
        "id": grant_id, "programme": "Compute 2027", "granted": 1, "balance": 0.994, "expires_at": None,
        "models": None, "status": "open", "low": False}
    assert ledger.verify() == []


def test_out_of_credits_is_openai_insufficient_quota_naming_grant_balance_and_where_to_apply(
    hub, client, setup
) -> None:
    _grant(hub, "0.01")
    r = _chat(client, setup["acme"], max_tokens=100)
    assert r.status_code == 429
    error = r.json()["error"]
    assert error["type"] == "insufficient_quota" and error["code"] == "insufficient_quota"
    assert "grant" in error["message"] and "'Compute 2027'" in error["message"]
    assert "balance of 0.01 credits" in error["message"] and "/hub/v1/programmes" in error["message"]
    assert r.headers["x-should-retry"] == "false" and r.headers["x-sovhub-credits-remaining"] == "0.01"
    # A smaller request fits: 4 tokens x 2000 = 0.008 credits.
    assert _chat(client, setup["acme"], max_tokens=2, text="hi").status_code == 200


def test_the_openai_sdk_raises_a_quota_error_it_does_not_retry(hub, setup) -> None:
    import httpx
    import openai

    from sovhub.app import create_app

    _grant(hub, "0.0001")
    hub.pm.register(FakePlugin(), name="tests.fake")
    add_fake_backend(hub, "fake1", ["echo"])
    calls = []
    with TestClient(create_app(hub)) as tc:
        def send(request: httpx.Request) -> httpx.Response:
            calls.append(request)
            r = tc.request(request.method, str(request.url), headers=dict(request.headers), content=request.content)
            return httpx.Response(r.status_code, headers=r.headers, content=r.content)

        sdk = openai.OpenAI(api_key=setup["acme"], base_url="http://testserver/v1", max_retries=3,
                            http_client=httpx.Client(transport=httpx.MockTransport(send)))
        with pytest.raises(openai.RateLimitError) as exc:
            sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}], max_tokens=50)
    hub.pm.unregister(name="tests.fake")
    assert exc.value.code == "insufficient_quota" and len(calls) == 1


def test_a_model_without_a_price_is_refused_unless_the_operator_makes_it_free(hub, client, setup) -> None:
    _grant(hub, "1")
    r = _chat(client, setup["acme"], model="other")
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_priced"
    hub.settings.credits.free_models = ["other"]
    assert _chat(client, setup["acme"], model="other").status_code == 200
    hub.settings.credits.free_models = []
    hub.settings.credits.free_unpriced_models = True
    assert _chat(client, setup["acme"], model="other").status_code == 200


def test_credits_required_bills_every_organization(hub, client, setup) -> None:
    hub.settings.access.credits_required = True
    r = _chat(client, setup["free"])
    assert r.status_code == 429 and "holds no open grant" in r.json()["error"]["message"]


def test_the_grant_that_expires_first_is_spent_first_and_models_are_respected(hub, client, setup) -> None:
    later = _grant(hub, "1", expires_at=utcnow() + timedelta(days=60))
    sooner = _grant(hub, "1", expires_at=utcnow() + timedelta(days=5))
    never = _grant(hub, "1")
    assert _chat(client, setup["acme"]).status_code == 200
    settle_all(client, hub)
    ledger = hub.services.get(Ledger)
    spent = {g: ledger.balances([ledger.account_id("grant", g)])[ledger.account_id("grant", g)].debits_posted
             for g in (later, sooner, never)}
    assert spent == {later: 0, sooner: 6000, never: 0}


def test_a_reservation_spans_grants_and_is_posted_in_spending_order(hub, client, setup) -> None:
    first = _grant(hub, "0.01", expires_at=utcnow() + timedelta(days=1))
    second = _grant(hub, "1", expires_at=utcnow() + timedelta(days=2))
    # Reserves 12 x 2000 = 24000: 10000 from the first, 14000 from the second; costs 6000, all from the first.
    r = _chat(client, setup["acme"])
    assert r.status_code == 200 and r.headers["x-sovhub-credits-remaining"] == "0.986"
    settle_all(client, hub)
    ledger = hub.services.get(Ledger)
    a, b = (ledger.balances([ledger.account_id("grant", g)])[ledger.account_id("grant", g)] for g in (first, second))
    assert (a.debits_posted, a.debits_pending, b.debits_posted, b.debits_pending) == (6000, 0, 0, 0)
    with hub.db.session() as s:
        kinds = sorted(s.scalars(select(CreditTransfer.kind).where(CreditTransfer.code == "usage")))
    assert kinds == ["pending", "pending", "post", "void"]
    assert ledger.verify() == []


def test_an_expired_grants_remainder_returns_to_its_programme(hub, client, setup) -> None:
    grant_id = _grant(hub, "5", expires_at=utcnow() + timedelta(seconds=2))
    credits = hub.services.get(Credits)
    ledger = hub.services.get(Ledger)
    pool = ledger.account_id("programme", setup["programme"].id)
    before = ledger.available(ledger.balances([pool])[pool])
    client.portal.call(credits.ensure_loaded, credits.state.grants(1))  # type: ignore[union-attr]
    returned = client.portal.call(credits.sweep_expired_grants, utcnow() + timedelta(seconds=3))  # type: ignore[union-attr]
    assert returned == 5 * MICRO
    settle_all(client, hub)
    assert ledger.available(ledger.balances([pool])[pool]) == before + 5 * MICRO
    body = client.get("/hub/v1/organization/credits", headers=_auth(setup["acme"])).json()
    assert body["balance"] == 0 and body["grants"][0]["id"] == grant_id
    assert ledger.verify() == []


def test_a_reservation_its_replica_never_settled_is_posted_at_its_amount_when_it_expires(hub, setup) -> None:
    import asyncio

    grant_id = _grant(hub, "1")
    credits = hub.services.get(Credits)
    ledger = hub.services.get(Ledger)

    async def run() -> None:
        await credits.ensure_loaded(credits.state.grants(1))
        got = await credits.live.reserve("lost", [grant_id], 7000, 1, '{"org": 1, "rid": "r-lost"}')
        assert got.ok
        await asyncio.sleep(0.01)
        assert await credits.live.expire() == 1
        # The late settlement of the killed replica (had it survived) changes nothing now.
        assert await credits.live.settle([("lost", 1000, "{}")]) == 0
        await credits.writer.drain()

    asyncio.run(run())
    account = ledger.account_id("grant", grant_id)
    assert ledger.balances([account])[account].debits_posted == 7000
    with hub.db.session() as s:
        post = s.scalars(select(CreditTransfer).where(CreditTransfer.kind == "post")).one()
    assert post.request_id == "r-lost" and post.details == {"expired": True}
    assert ledger.verify() == []


def test_prices_are_effective_dated_and_listed(hub, client, setup, data_dir) -> None:
    from tests.conftest import run_cli

    set_price(hub, "echo", input_per_1m=1 * MICRO, output_per_1m=1 * MICRO,
              effective_from=utcnow() + timedelta(days=30), actor="tests")
    hub.services.get(Credits).state.load()
    body = client.get("/hub/v1/prices").json()
    echo = [p for p in body["data"] if p["model"] == "echo"]
    assert [(p["current"], p["input_per_1m"], p["output_per_1m"]) for p in echo] == [(True, 1000, 2000),
                                                                                    (False, 1, 1)]
    assert body["unpriced_models_free"] is False
    assert run_cli(data_dir, "prices", "set", "m2", "--input-per-1m", "0.5", "--output-per-1m", "1.25") == 0
    assert run_cli(data_dir, "prices", "set", "m2", "--input-per-1m", "1", "--output-per-1m", "1",
                   "--from", "2001-01-01") == 1
    assert run_cli(data_dir, "prices", "set", "m2", "--input-per-1m", "-1", "--output-per-1m", "1") == 1


def test_the_credits_endpoint_needs_an_organization_key(hub, client, setup) -> None:
    assert client.get("/hub/v1/organization/credits").status_code == 401
    body = client.get("/hub/v1/organization/credits", headers=_auth(setup["free"])).json()
    assert body == {"object": "organization.credits", "organization": "free", "balance": 0, "required": False,
                    "apply_url": "/hub/v1/programmes", "grants": []}

