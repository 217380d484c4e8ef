"""Several backends serving one model, against real loopback servers: least outstanding requests, prefix-sticky
routing, and active health checks."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from sovhub.app import create_app
from sovhub.backends.catalog import add_backend
from sovhub.backends.registry import BackendRegistry
from sovhub.hub import Hub
from tests.server import ThreadedServer
from tests.upstream_server import FakeUpstream


def _ask(url: str, key: str, content: str, stream: bool = False) -> int:
    r = httpx.post(url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=30,
                   json={"model": "pooled", "stream": stream, "messages": [{"role": "user", "content": content}]})
    return r.status_code


def test_concurrent_requests_go_to_the_backend_with_fewest_in_flight(hub: Hub, api_key: str) -> None:
    with FakeUpstream(["pooled"], delay=0.1, words=5) as a, FakeUpstream(["pooled"], delay=0.1, words=5) as b:
        add_backend(hub, "a", url=a.url, models=["pooled"])
        add_backend(hub, "b", url=b.url, models=["pooled"])
        with ThreadedServer(create_app(hub)) as server, ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda i: _ask(server.url, api_key, f"q{i}", stream=True), range(8)))
            assert hub.services.get(BackendRegistry).outstanding == {"a": 0, "b": 0}
    assert codes == [200] * 8
    assert (len(a.requests), len(b.requests)) in ((4, 4), (3, 5), (5, 3)), (len(a.requests), len(b.requests))


def test_prefix_sticky_keeps_a_prompt_on_one_backend_and_spreads_others(hub: Hub, api_key: str) -> None:
    hub.settings.backend_routing = "prefix_sticky"
    with FakeUpstream(["pooled"]) as a, FakeUpstream(["pooled"]) as b:
        add_backend(hub, "a", url=a.url, models=["pooled"])
        add_backend(hub, "b", url=b.url, models=["pooled"])
        with ThreadedServer(create_app(hub)) as server:
            assert [_ask(server.url, api_key, "the same long system prompt") for _ in range(6)] == [200] * 6
            same = (len(a.requests), len(b.requests))
            for i in range(30):
                assert _ask(server.url, api_key, f"prompt number {i}") == 200
    assert sorted(same) == [0, 6], same  # one backend had all six (its prefix cache stays warm)
    assert min(len(a.requests), len(b.requests)) >= 6, (len(a.requests), len(b.requests))


def test_least_outstanding_alternates_when_idle(hub: Hub, api_key: str) -> None:
    with FakeUpstream(["pooled"]) as a, FakeUpstream(["pooled"]) as b:
        add_backend(hub, "a", url=a.url, models=["pooled"])
        add_backend(hub, "b", url=b.url, models=["pooled"])
        with ThreadedServer(create_app(hub)) as server:
            assert [_ask(server.url, api_key, "hi") for _ in range(6)] == [200] * 6
    assert (len(a.requests), len(b.requests)) == (3, 3)


def test_a_dead_backend_is_out_within_two_seconds_and_requests_still_succeed(hub: Hub, api_key: str) -> None:
    hub.settings.backend_probe_interval_s = 0.5
    hub.settings.backend_cooldown_s = 60
    with FakeUpstream(["pooled"]) as alive:
        dead = FakeUpstream(["pooled"])
        dead.__enter__()
        add_backend(hub, "alive", url=alive.url, models=["pooled"])
        add_backend(hub, "dying", url=dead.url, models=["pooled"])
        with ThreadedServer(create_app(hub)) as server:
            registry = hub.services.get(BackendRegistry)
            dying = registry.get("dying")
            assert dying is not None and registry.healthy(dying)
            dead.__exit__()
            killed = time.monotonic()
            while registry.healthy(dying) and time.monotonic() - killed < 5:
                time.sleep(0.05)
            out_after = time.monotonic() - killed
            codes = [_ask(server.url, api_key, f"q{i}") for i in range(6)]
    assert out_after < 2.0, out_after
    assert codes == [200] * 6 and len(alive.requests) == 6


@pytest.mark.parametrize("interval", [0.0])
def test_health_checks_can_be_turned_off(hub: Hub, api_key: str, interval: float) -> None:
    hub.settings.backend_probe_interval_s = interval
    with FakeUpstream(["pooled"]) as a, FakeUpstream(["pooled"]) as b:
        add_backend(hub, "a", url=a.url, models=["pooled"])
        add_backend(hub, "b", url=b.url, models=["pooled"])
        with ThreadedServer(create_app(hub)):
            time.sleep(1.0)
    assert a.connections == b.connections == 0  # no check went out
