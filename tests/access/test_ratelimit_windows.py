"""The Redis limiter's sliding windows end: what was counted stops counting, and its keys expire.

Real Redis; the windows are shortened to one second (the limiter reads their length per call), so
a test can wait them out. The clock is Redis' own (`TIME`), as on every replica.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from sovhub.access import ratelimit
from sovhub.access.ratelimit import Limit, RedisLimiter, Reservation
from tests.access.conftest import redis_url

WINDOW_MS = 1_000


@pytest.fixture
async def limiter(monkeypatch: pytest.MonkeyPatch) -> Any:
    import redis.asyncio as aioredis

    monkeypatch.setitem(ratelimit.REQUEST_FIELDS, "rpm", WINDOW_MS)
    monkeypatch.setitem(ratelimit.TOKEN_FIELDS, "tpm", WINDOW_MS)
    client = aioredis.Redis.from_url(redis_url(), decode_responses=True)
    prefix = f"sovhub-test:{uuid.uuid4().hex[:10]}:"
    yield RedisLimiter(client, prefix), client, prefix
    keys = [k async for k in client.scan_iter(f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def _reserve(tokens: int) -> Reservation:
    return Reservation(uuid.uuid4().hex, tokens, datetime.now(UTC))


async def test_requests_counted_in_a_window_stop_counting_when_it_ends(limiter: Any) -> None:
    store, client, prefix = limiter
    rpm = [Limit("key:1", "rpm", 2)]
    assert [c.wait_ms for c in await store.admit(rpm)] == [0]
    assert [c.wait_ms for c in await store.admit(rpm)] == [0]
    [refused] = await store.admit(rpm)
    assert refused.used == 2 and 0 < refused.wait_ms <= WINDOW_MS
    # The key lives no longer than its window: an idle key does not stay in Redis.
    ttl = await client.pttl(f"{prefix}key:1:rpm")
    assert 0 < ttl <= WINDOW_MS
    await asyncio.sleep(refused.wait_ms / 1000 + 0.1)
    [again] = await store.admit(rpm)
    assert again.wait_ms == 0 and again.used == 0
    await asyncio.sleep(WINDOW_MS / 1000 + 0.2)
    assert [k async for k in client.scan_iter(f"{prefix}*")] == []


async def test_tokens_held_in_a_window_are_given_back_when_it_ends(limiter: Any) -> None:
    store, client, prefix = limiter
    tpm = [Limit("key:2", "tpm", 100)]
    first = _reserve(80)
    assert [c.wait_ms for c in await store.admit(tpm, first)] == [0]
    [refused] = await store.admit(tpm, _reserve(30))
    assert refused.used == 80 and 0 < refused.wait_ms <= WINDOW_MS
    assert int(await client.get(f"{prefix}key:2:tpm:sum")) == 80
    await asyncio.sleep(refused.wait_ms / 1000 + 0.1)
    # The expired entry's tokens leave the running sum: the same request now fits.
    [admitted] = await store.admit(tpm, _reserve(30))
    assert admitted.wait_ms == 0 and admitted.used == 0
    assert int(await client.get(f"{prefix}key:2:tpm:sum")) == 30
    # Settling a reservation whose window already ended changes nothing (it can no longer count).
    await store.settle(tpm, 5, first)
    assert int(await client.get(f"{prefix}key:2:tpm:sum")) == 30
