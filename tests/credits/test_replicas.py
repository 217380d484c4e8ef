"""Three hubs sharing PostgreSQL and Redis: concurrent requests never spend more than the grant."""

from __future__ import annotations

import contextlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from sovhub.accounts import create_key, create_org
from sovhub.credits.amounts import MICRO
from sovhub.credits.control import Credits
from sovhub.credits.ledger import Ledger
from sovhub.credits.prices import set_price
from sovhub.credits.programmes import ProgrammeRules, create_programme, grant_credits
from tests.access.conftest import redis_url
from tests.conftest import add_fake_backend, need_service, postgres_url
from tests.fakes import FakePlugin

from .conftest import credits_hub

pytestmark = pytest.mark.services


@pytest.fixture
def shared(data_dir: Path) -> tuple[str, str, str]:
    from tests.conftest import _drop_schema, _pg_schema_url

    base = postgres_url()
    if not base:
        need_service("PostgreSQL not configured: set SOVHUB_TEST_DATABASE_URL")
    assert base is not None
    url = redis_url()
    database, schema = _pg_schema_url(base)
    prefix = f"sovhub-test-credits:{uuid.uuid4().hex[:10]}:"
    yield database, url, prefix
    _drop_schema(base, schema)
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(prefix + "*"):
        client.delete(key)
    client.close()


def test_concurrent_requests_across_three_hubs_never_overspend(tmp_path: Path, shared) -> None:
    database, redis_at, prefix = shared
    overrides = {"access": {"redis_url": redis_at, "redis_prefix": prefix + "rl:"},
                 "credits": {"redis_prefix": prefix, "journal_interval_s": 0.05}}
    # Replicas share their configuration and keys (one config volume), not just the database.
    hubs = [credits_hub(tmp_path / "data", database, **overrides) for _ in range(3)]
    setup = hubs[0]
    create_org(setup, "acme")
    secret = create_key(setup, "acme").secret
    create_programme(setup, "P", 100 * MICRO, [("Fund", 10_000)], ProgrammeRules(), actor="tests")
    # One output token: 0.5 credits. A one-word, two-character prompt with max_tokens 1 reserves and costs one.
    set_price(setup, "echo", input_per_1m=0, output_per_1m=500_000 * MICRO, actor="tests")
    grant = grant_credits(setup, "P", "acme", 5 * MICRO, reason="pilot", actor="tests")
    add_fake_backend(setup, "fake1", ["echo"])
    from sovhub.app import create_app

    with contextlib.ExitStack() as stack:
        clients = []
        for i, hub in enumerate(hubs):
            hub.pm.register(FakePlugin(), name=f"tests.fake{i}")
            clients.append(stack.enter_context(TestClient(create_app(hub))))

        def one(i: int) -> int:
            r = clients[i % 3].post("/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                                    json={"model": "echo", "messages": [{"role": "user", "content": "hi"}],
                                          "max_tokens": 1})
            assert r.status_code in (200, 429), r.text
            return r.status_code

        with ThreadPoolExecutor(max_workers=24) as pool:
            codes = list(pool.map(one, range(60)))
        assert codes.count(200) == 10, codes
        served = {i % 3 for i, c in enumerate(codes) if c == 200}
        assert len(served) >= 2, "several hubs should have answered"
        for client, hub in zip(clients, hubs, strict=True):
            credits = hub.services.get(Credits)
            client.portal.call(credits.flush_settlements)  # type: ignore[union-attr]
        for client, hub in zip(clients, hubs, strict=True):
            client.portal.call(hub.services.get(Credits).writer.drain)  # type: ignore[union-attr]
        left = clients[0].get("/hub/v1/organization/credits", headers={"authorization": f"Bearer {secret}"}).json()
        assert left["balance"] == 0
    ledger = setup.services.get(Ledger)
    account = ledger.account_id("grant", grant.id)
    balance = ledger.balances([account])[account]
    assert (balance.debits_posted, balance.debits_pending) == (5 * MICRO, 0)
    assert ledger.verify() == []
    for hub in hubs:
        hub.close()


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_live_stores_agree_on_reserve_settle_expire_and_take(kind: str) -> None:
    """The same script of operations gives the same balances and journal in both stores."""
    import asyncio
    import json

    import redis.asyncio as aioredis

    from sovhub.credits.live import MemoryLive, RedisLive

    client = None
    if kind == "redis":
        client = aioredis.Redis.from_url(redis_url(), decode_responses=True)
        store = RedisLive(client, f"sovhub-test-credits:{uuid.uuid4().hex[:10]}:")
    else:
        store = MemoryLive()
    try:
        await store.load({1: 100, 2: 50})
        await store.load({1: 999})  # loaded once: a second load never overwrites a live balance
        assert (await store.reserve("t1", [1, 2], 120, 60_000, "{}")).ok
        assert (await store.reserve("t1", [1, 2], 1, 60_000, "{}")).duplicate
        refused = await store.reserve("t2", [1, 2], 31, 60_000, "{}")
        assert not refused.ok and refused.remaining == 30 and refused.balances == {1: 0, 2: 30}
        assert await store.settle([("t1", 110, '{"n": 1}')]) == 1
        assert await store.settle([("t1", 110, "{}")]) == 0  # settled once
        assert await store.balances([1, 2]) == {1: 0, 2: 40}
        assert (await store.reserve("t3", [2], 40, 1, '{"rid": "r3"}')).ok
        await asyncio.sleep(0.01)
        assert await store.expire() == 1
        assert await store.balances([2]) == {2: 0}
        assert (await store.reserve("t4", [1, 2], 0, 60_000, "{}")).ok  # a free request reserves nothing
        await store.load({3: 7})
        assert await store.take(3) == 7 and await store.take(3) == 0
        journal = await store.read(None, 100)
        ops = [(f["op"], f.get("legs") or f.get("amount")) for _, f in journal]
        assert ops == [("pending", "1:100,2:20"), ("post", "1:100:100,2:10:20"), ("pending", "2:40"),
                       ("post", "2:40:40"), ("return", "7")]
        assert json.loads(journal[3][1]["details"]) == {"expired": True}
        await store.trim(journal[1][0])
        assert [f["op"] for _, f in await store.read(None, 100)] == ["pending", "post", "return"]
    finally:
        if client is not None:
            async for key in client.scan_iter(store.prefix + "*"):  # type: ignore[union-attr]
                await client.delete(key)
            await client.aclose()
