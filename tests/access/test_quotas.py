"""Quotas and rate limits through the real /v1 API, on the in-process and the Redis store."""

from __future__ import annotations

import re
from collections import deque
from typing import Any

import pytest

from sovhub.access import ratelimit
from sovhub.access.quotas import format_reset, set_key_limits, set_org_limits
from sovhub.access.ratelimit import Limit, MemoryLimiter, period_bounds
from sovhub.access.tiers import set_tier
from sovhub.access.verification import staff_verify
from sovhub.errors import Conflict, InvalidRequest, NotFound

from .conftest import chat, org_with_key


def test_key_rpm_exact_with_openai_headers(make_app: Any, limiter_store: dict[str, Any]) -> None:
    hub, client = make_app(**limiter_store)
    _, secret, prefix = org_with_key(hub, "acme", rpm=3)
    remaining = []
    for _ in range(3):
        r = chat(client, secret)
        assert r.status_code == 200, r.text
        assert r.headers["x-ratelimit-limit-requests"] == "3"
        assert r.headers["x-ratelimit-reset-requests"] == "1m0s"
        remaining.append(r.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"]
    r = chat(client, secret)
    assert r.status_code == 429
    err = r.json()["error"]
    assert err["type"] == "rate_limit_error" and err["code"] == "rate_limit_exceeded"
    assert f"API key {prefix}" in err["message"] and "(rpm)" in err["message"]
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert r.headers["x-ratelimit-remaining-requests"] == "0"


def test_token_per_minute_limit(make_app: Any, limiter_store: dict[str, Any]) -> None:
    hub, client = make_app(**limiter_store)
    _, secret, _ = org_with_key(hub, "acme", tpm=5)
    # Reserves max_tokens + 13 // 4 = 5; uses 3 prompt + 3 completion tokens (echo ignores max_tokens).
    first = chat(client, secret, text="one two three", max_tokens=2)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-tokens"] == "5"
    assert first.headers["x-ratelimit-remaining-tokens"] == "0"  # its reservation is held
    second = chat(client, secret, max_tokens=1)
    assert second.status_code == 429
    assert "tokens per minute (tpm)" in second.json()["error"]["message"]
    assert second.headers["x-ratelimit-remaining-tokens"] == "0"


def test_token_budget_per_month(make_app: Any, limiter_store: dict[str, Any]) -> None:
    hub, client = make_app(**limiter_store)
    _, secret, _ = org_with_key(hub, "acme", budget_month=4)
    assert chat(client, secret, text="a b c", max_tokens=1).status_code == 200
    refused = chat(client, secret, max_tokens=1)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "token_budget_exceeded"
    assert int(refused.headers["retry-after"]) >= 1


def test_org_limit_shared_by_its_keys_not_by_others(make_app: Any, limiter_store: dict[str, Any]) -> None:
    from sovhub.accounts import create_key

    hub, client = make_app(**limiter_store)
    org_id, key1, _ = org_with_key(hub, "acme")
    key2 = create_key(hub, "acme").secret
    _, other, _ = org_with_key(hub, "globex")
    set_org_limits(hub, org_id, {"rpm": 2})
    assert chat(client, key1).status_code == 200
    assert chat(client, key2).status_code == 200
    r = chat(client, key1)
    assert r.status_code == 429 and "organization acme" in r.json()["error"]["message"]
    assert chat(client, other).status_code == 200


def test_tier_limit_applies_to_that_tier_only(make_app: Any, limiter_store: dict[str, Any]) -> None:
    hub, client = make_app(tier_limits={"verified": {"rpm": 1}}, **limiter_store)
    org_id, secret, _ = org_with_key(hub, "acme")
    set_tier(hub, "advanced", "verified")
    staff_verify(hub, org_id, reason="test", actor="test")
    assert chat(client, secret, model="advanced").status_code == 200
    r = chat(client, secret, model="advanced")
    assert r.status_code == 429 and "tier 'verified'" in r.json()["error"]["message"]
    assert chat(client, secret, model="echo").status_code == 200


def test_redis_down_fails_closed_with_503(make_app: Any) -> None:
    from .oidc_provider import free_port

    hub, client = make_app(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    _, secret, _ = org_with_key(hub, "acme", rpm=5)
    r = chat(client, secret)
    assert r.status_code == 503 and r.json()["error"]["code"] == "rate_limiter_unavailable"
    assert r.headers["retry-after"] == "1"
    _, unlimited, _ = org_with_key(hub, "globex")
    assert chat(client, unlimited).status_code == 200  # no limits: nothing to count, no Redis needed


def test_default_org_limits_from_settings(make_app: Any) -> None:
    hub, client = make_app(org_limits={"rpd": 1})
    _, secret, _ = org_with_key(hub, "acme")
    assert chat(client, secret).status_code == 200
    r = chat(client, secret)
    assert r.status_code == 429 and "(rpd)" in r.json()["error"]["message"]


def test_no_limits_no_headers(make_app: Any) -> None:
    hub, client = make_app()
    _, secret, _ = org_with_key(hub, "acme")
    r = chat(client, secret)
    assert r.status_code == 200 and "x-ratelimit-limit-requests" not in r.headers


def test_set_org_limits_validates(hub: Any) -> None:
    from sovhub.accounts import create_org

    org = create_org(hub, "acme")
    with pytest.raises(InvalidRequest, match="unknown limit"):
        set_org_limits(hub, org.id, {"rps": 1})
    with pytest.raises(InvalidRequest, match=">= 0"):
        set_org_limits(hub, org.id, {"rpm": -1})
    assert set_org_limits(hub, org.id, {"rpm": 5, "tpd": 9}) == {"rpm": 5, "tpd": 9}
    assert set_org_limits(hub, org.id, {"rpm": None}) == {"tpd": 9}


async def test_memory_window_slides(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_000_000_000]
    monkeypatch.setattr(MemoryLimiter, "_now_ms", staticmethod(lambda: clock[0]))
    store = MemoryLimiter()
    limit = [Limit("key:1", "rpm", 2)]
    assert not any(c.wait_ms for c in await store.admit(limit))
    clock[0] += 30_000
    assert not any(c.wait_ms for c in await store.admit(limit))
    refused = await store.admit(limit)
    assert refused[0].wait_ms == 30_000  # the first entry leaves the window in 30 s
    clock[0] += 30_000
    assert not any(c.wait_ms for c in await store.admit(limit))


async def test_memory_tokens_expire_from_running_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [5_000_000]
    monkeypatch.setattr(MemoryLimiter, "_now_ms", staticmethod(lambda: clock[0]))
    store = MemoryLimiter()
    limit = [Limit("key:1", "tpm", 10)]
    await store.admit(limit)
    await store.settle(limit, 7)
    clock[0] += 10_000
    await store.settle(limit, 5)
    refused = await store.admit(limit)
    assert refused[0].used == 12 and refused[0].wait_ms == 50_000
    clock[0] += 50_000
    ok = await store.admit(limit)
    assert ok[0].used == 5 and ok[0].wait_ms == 0
    assert isinstance(store._logs["key:1:tpm"], deque)


def test_period_bounds() -> None:
    from datetime import UTC, datetime

    now = datetime(2025, 2, 27, 12, 0, tzinfo=UTC)  # a Thursday
    assert period_bounds("budget_day", now) == ("20250227", 12 * 3600 * 1000)
    assert period_bounds("budget_week", now)[0] == "20250224"
    assert period_bounds("budget_month", now) == ("20250201", (36 * 3600) * 1000)
    with pytest.raises(ValueError):
        period_bounds("rpm", now)


def test_format_reset() -> None:
    assert format_reset(20) == "20ms"
    assert format_reset(6000) == "6s"
    assert format_reset(1500) == "1.5s"
    assert format_reset(90_000) == "1m30s"
    assert format_reset(7_205_000) == "2h0m5s"
    assert set(ratelimit.FIELDS) >= {"rpm", "tpm", "rpd", "tpd", "budget_month"}


# --- changing a key's limits after creation ---


def test_new_key_limits_apply_to_the_next_request(make_app: Any, limiter_store: dict[str, Any]) -> None:
    hub, client = make_app(**limiter_store)
    _, secret, prefix = org_with_key(hub, "acme")
    first = chat(client, secret)  # the key, without limits, is now in the key cache
    assert first.status_code == 200 and "x-ratelimit-limit-requests" not in first.headers
    assert set_key_limits(hub, prefix, {"rpm": 1}, actor="test") == {"rpm": 1}
    admitted = chat(client, secret)
    assert admitted.status_code == 200
    assert admitted.headers["x-ratelimit-limit-requests"] == "1"
    assert admitted.headers["x-ratelimit-remaining-requests"] == "0"
    refused = chat(client, secret)
    assert refused.status_code == 429 and f"API key {prefix}" in refused.json()["error"]["message"]
    assert refused.headers["x-ratelimit-limit-requests"] == "1"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert int(refused.headers["retry-after"]) >= 1
    # Clearing it lifts the limit at once too.
    assert set_key_limits(hub, prefix, {"rpm": None}, actor="test") == {}
    assert chat(client, secret).status_code == 200


def test_set_key_limits_merges_clears_and_audits(hub: Any, events: Any) -> None:
    from sovhub.accounts import authenticate, create_key, create_org

    create_org(hub, "acme")
    key = create_key(hub, "acme", limits={"rpm": 5, "tpd": 100})
    current = set_key_limits(hub, key.prefix, {"tpm": 50, "tpd": None, "budget_month": 0}, actor="user:7")
    assert current == {"rpm": 5, "tpm": 50, "budget_month": 0}
    assert authenticate(hub, key.secret).limits == current
    event = events.last("key.limits_set")
    assert (event.actor, event.subject) == ("user:7", f"key:{key.prefix}")
    assert event.data == {"org": "acme", "limits": current}


def test_set_key_limits_evicts_only_that_key_from_the_cache(hub: Any) -> None:
    from sovhub.accounts import KeyCache, authenticate, create_key, create_org

    create_org(hub, "acme")
    changed, other = create_key(hub, "acme"), create_key(hub, "acme")
    cache = KeyCache(ttl=60)
    hub.services.replace(KeyCache, cache)
    for key in (changed, other):
        cache.put(key.secret, authenticate(hub, key.secret))
    set_key_limits(hub, changed.prefix, {"rpm": 2}, actor="test")
    assert cache.get(changed.secret) is None
    assert cache.get(other.secret) is not None


@pytest.mark.parametrize(("limits", "message"), [
    ({"rpm": -1}, "limit rpm must be >= 0, got -1"),
    ({"rps": 1}, "unknown limit 'rps'"),
    ({"tpm": "5"}, "limit tpm must be a whole number"),
    ({"tpd": 2.5}, "limit tpd must be a whole number"),
    ({"rpd": True}, "limit rpd must be a whole number"),
])
def test_set_key_limits_refuses_bad_values_and_changes_nothing(
    hub: Any, events: Any, limits: dict[str, Any], message: str
) -> None:
    from sovhub.accounts import authenticate, create_key, create_org

    create_org(hub, "acme")
    key = create_key(hub, "acme", limits={"rpm": 5})
    with pytest.raises(InvalidRequest, match=re.escape(message)) as info:
        set_key_limits(hub, key.prefix, {"tpm": 9, **limits}, actor="test")
    assert info.value.param == next(iter(limits))
    assert authenticate(hub, key.secret).limits == {"rpm": 5}
    assert "key.limits_set" not in events.names()


def test_set_key_limits_unknown_prefix_is_not_found(hub: Any) -> None:
    with pytest.raises(NotFound, match="no API key with prefix 'sk-sov-nothere'") as info:
        set_key_limits(hub, "sk-sov-nothere", {"rpm": 1}, actor="test")
    assert info.value.status == 404


def test_set_key_limits_refuses_a_revoked_key(hub: Any, events: Any) -> None:
    from sovhub.accounts import create_key, create_org, list_keys, revoke_key

    create_org(hub, "acme")
    key = create_key(hub, "acme", limits={"rpm": 5})
    revoke_key(hub, key.prefix, actor="test")
    with pytest.raises(Conflict, match="is revoked") as info:
        set_key_limits(hub, key.prefix, {"rpm": 50}, actor="test")
    assert info.value.code == "revoked_api_key" and info.value.status == 409
    assert [k.limits for k, _ in list_keys(hub, "acme")] == [{"rpm": 5}]
    assert "key.limits_set" not in events.names()


# -- reservations (issue 12): max_tokens x n held from admission to settlement ------------------


def test_concurrent_requests_cannot_pass_a_token_limit(make_app: Any, limiter_store: dict[str, Any]) -> None:
    import anyio

    from sovhub.admission import admit, settle
    from sovhub.errors import RateLimited
    from sovhub.pipeline import Principal

    hub, client = make_app(**limiter_store)
    org_id = create_org_id(hub, "acme")
    set_org_limits(hub, org_id, {"tpm": 100})
    principal = Principal(org_id=org_id, org_name="acme")

    async def attempt() -> Any:
        try:
            return await admit(hub, principal, "chat", "echo", reserve=40)
        except RateLimited as exc:
            return exc

    async def main() -> list[Any]:
        # Five requests in flight at once, 40 tokens each against 100: two fit, three must wait.
        out: list[Any] = []

        async def one() -> None:
            out.append(await attempt())

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(one)
        admitted = [a for a in out if not isinstance(a, Exception)]
        refused = [a for a in out if isinstance(a, RateLimited)]
        assert len(admitted) == 2 and len(refused) == 3, out
        assert refused[0].status == 429 and "may use up to 40" in refused[0].message
        # Settling corrects the reservation to what was used: 2 x 5 tokens leave room for two more.
        for a in admitted:
            await settle(hub, a, 5)
        await settle(hub, admitted[0], 50)  # a second settle of the same admission changes nothing
        again = [await attempt() for _ in range(3)]
        assert [isinstance(a, RateLimited) for a in again] == [False, False, True]
        return again

    # On the app's own event loop: its Redis connection belongs to it.
    client.portal.call(main)


def create_org_id(hub: Any, name: str) -> int:
    from sovhub.accounts import create_org

    return create_org(hub, name).id


def test_reservations_are_exact_across_replicas() -> None:
    import anyio

    from sovhub.access.ratelimit import RedisLimiter, Reservation
    from tests.access.conftest import redis_url

    url = redis_url()
    import uuid
    from datetime import UTC, datetime

    import redis.asyncio as aioredis

    async def main() -> None:
        prefix = f"sovhub-test:{uuid.uuid4().hex[:10]}:"
        conns = [aioredis.from_url(url), aioredis.from_url(url)]
        replicas = [RedisLimiter(c, prefix) for c in conns]
        limit = [Limit("org:1", "tpm", 100), Limit("org:1", "budget_day", 1000)]
        held = [Reservation(uuid.uuid4().hex, 40, datetime.now(UTC)) for _ in range(4)]
        results = [await replicas[i % 2].admit(limit, r) for i, r in enumerate(held)]
        assert [any(c.wait_ms for c in checks) for checks in results] == [False, False, True, True]
        # Replica 1 settles replica 0's reservation at 10 tokens: 50 used, one more 40 fits.
        await replicas[1].settle(limit, 10, held[0])
        assert not any(c.wait_ms for c in await replicas[0].admit(limit, held[2]))
        checks = await replicas[1].admit(limit, Reservation(uuid.uuid4().hex, 1, datetime.now(UTC)))
        assert checks[0].used == 90 and checks[1].used == 90
        for c in conns:
            await c.aclose()

    anyio.run(main)


def test_n_is_capped_and_default_max_tokens_is_reserved(
    make_app: Any, limiter_store: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakes import EchoBackend

    # The echo answers once whatever n asks; the point here is what admission holds for n choices.
    monkeypatch.setattr(EchoBackend, "max_n", 128)
    hub, client = make_app(**limiter_store)
    _, secret, _ = org_with_key(hub, "acme", tpm=10_000)
    r = chat(client, secret, n=128)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "n" and r.json()["error"]["code"] == "n_too_large"
    # No max_tokens: the default (4096) is sent upstream and reserved n times, past the 10,000 limit.
    r = chat(client, secret, n=3)
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "tokens_over_limit"
    assert "Lower max_tokens or n" in r.json()["error"]["message"]
    assert chat(client, secret, n=2, max_tokens=100).status_code == 200


def test_staff_cannot_lift_a_minted_key_above_its_creator(hub: Any, events: Any) -> None:
    """The creator's ceiling holds after creation too: raising or clearing a child's limit is refused."""
    from sovhub.accounts import authenticate, create_key, create_org
    from sovhub.errors import InvalidRequest

    create_org(hub, "acme")
    parent = create_key(hub, "acme", scopes=["admin"], limits={"rpm": 10, "tpd": 500})
    child = create_key(hub, "acme", limits={"rpm": 5}, creator=authenticate(hub, parent.secret))
    assert authenticate(hub, child.secret).limits == {"rpm": 5, "tpd": 500}
    for change, field in (({"rpm": 11}, "rpm"), ({"tpd": None}, "tpd"), ({"rpm": 6, "tpd": 501}, "tpd")):
        with pytest.raises(InvalidRequest, match="which made this key") as refused:
            set_key_limits(hub, child.prefix, change, actor="test")
        assert refused.value.param == field and refused.value.code == "limit_above_parent"
    assert authenticate(hub, child.secret).limits == {"rpm": 5, "tpd": 500}
    # Within the ceiling (equal included), and limits the creator does not have, are fine.
    assert set_key_limits(hub, child.prefix, {"rpm": 10, "tpm": 99}, actor="test") == {"rpm": 10, "tpd": 500,
                                                                                        "tpm": 99}


def test_lowering_a_creator_lowers_the_keys_it_minted(hub: Any, events: Any) -> None:
    from sovhub.accounts import authenticate, create_key, create_org

    create_org(hub, "acme")
    parent = create_key(hub, "acme", scopes=["admin"], limits={"rpm": 10})
    child = create_key(hub, "acme", scopes=["admin"], limits={"rpm": 8, "tpm": 70},
                       creator=authenticate(hub, parent.secret))
    grandchild = create_key(hub, "acme", limits={"rpm": 3}, creator=authenticate(hub, child.secret))
    assert authenticate(hub, child.secret).limits == {"rpm": 8, "tpm": 70}
    set_key_limits(hub, parent.prefix, {"rpm": 4, "tpm": 50}, actor="test")
    assert authenticate(hub, child.secret).limits == {"rpm": 4, "tpm": 50}
    assert authenticate(hub, grandchild.secret).limits == {"rpm": 3, "tpm": 50}
    narrowed = events.last("key.limits_set").data["narrowed_children"]
    assert sorted(narrowed) == sorted([child.prefix, grandchild.prefix])


def test_the_prompt_is_reserved_with_the_backends_own_tokenizer(hub: Any, fake_plugin: Any, api_key: str) -> None:
    """A prompt of 2,000 characters is 2,000 tokens to this backend: 500 by the 4-character rule would pass."""
    from fastapi.testclient import TestClient

    from sovhub.access.quotas import set_org_limits
    from sovhub.accounts import get_org
    from sovhub.app import create_app
    from tests.conftest import add_fake_backend

    add_fake_backend(hub, "dense", ["dense"], tokenizer="chars")
    add_fake_backend(hub, "plain", ["plain"])
    set_org_limits(hub, get_org(hub, "acme").id, {"tpm": 1_000})
    text = "字" * 2_000
    with TestClient(create_app(hub), headers={"authorization": f"Bearer {api_key}"}) as client:
        def ask(model: str) -> Any:
            return client.post("/v1/chat/completions", json={
                "model": model, "max_tokens": 10, "messages": [{"role": "user", "content": text}]})

        refused = ask("dense")
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "tokens_over_limit"
        assert fake_plugin.instances["dense"].calls == 0
        # A backend without a tokenizer here is still estimated (and fits).
        assert ask("plain").status_code == 200
