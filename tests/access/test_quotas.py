"""Quotas and rate limits through the real /v1 API, on the in-process and the Redis store."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

from sovhub.access import ratelimit
from sovhub.access.quotas import format_reset, set_org_limits
from sovhub.access.ratelimit import Limit, MemoryLimiter, period_bounds
from sovhub.access.tiers import set_tier
from sovhub.access.verification import staff_verify
from sovhub.errors import InvalidRequest

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
    first = chat(client, secret, text="one two three")  # 3 prompt + 3 completion tokens
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-tokens"] == "5"
    assert first.headers["x-ratelimit-remaining-tokens"] == "5"  # tokens count once settled
    second = chat(client, secret)
    assert second.status_code == 429
    assert "tokens per minute (tpm)" in second.json()["error"]["message"]
    assert second.headers["x-ratelimit-remaining-tokens"] == "0"


def test_token_budget_per_month(make_app: Any, limiter_store: dict[str, Any]) -> None:
    hub, client = make_app(**limiter_store)
    _, secret, _ = org_with_key(hub, "acme", budget_month=4)
    assert chat(client, secret, text="a b c").status_code == 200
    refused = chat(client, secret)
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
