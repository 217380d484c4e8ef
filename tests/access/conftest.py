"""Fixtures for the access tests: an app serving an open and an advanced model, orgs and keys, events."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sovhub.accounts import create_key, create_org
from sovhub.events import Event
from sovhub.hookspecs import hookimpl
from sovhub.hub import Hub, build_hub
from sovhub.settings import Settings
from tests.conftest import add_fake_backend, make_settings, need_service
from tests.fakes import FakePlugin

# The other areas' plugins (safety models, assistant UI) are not under test here and are slow to
# start; the access tests run the core and the access plugin, registered as in production.
OTHER_AREAS = ("sovhub.sovereignty.plugin", "sovhub.safety.plugin", "sovhub.assistant.plugin")


def access_plugin_manager() -> Any:
    from sovhub.plugins import get_plugin_manager

    pm = get_plugin_manager(load_entrypoints=False)
    for name in OTHER_AREAS:
        pm.unregister(name=name)
    return pm


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    h = build_hub(settings, pm=access_plugin_manager())
    yield h
    h.close()


class EventLog:
    def __init__(self) -> None:
        self.events: list[Event] = []

    @hookimpl
    def sovhub_event(self, hub: Hub, event: Event) -> None:
        self.events.append(event)

    def names(self) -> list[str]:
        return [e.name for e in self.events]

    def last(self, name: str) -> Event:
        return next(e for e in reversed(self.events) if e.name == name)


def redis_url() -> str:
    url = os.environ.get("SOVHUB_TEST_REDIS_URL")
    if not url:
        need_service("Redis not configured: set SOVHUB_TEST_REDIS_URL")
    assert url is not None
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        need_service(f"Redis at {url} not reachable: {exc}")
    return url


@pytest.fixture(params=["memory", "redis"])
def limiter_store(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Access settings for each rate-limit store; Redis gets a fresh key prefix per test."""
    if request.param == "memory":
        return {}
    return {"redis_url": redis_url(), "redis_prefix": f"sovhub-test:{uuid.uuid4().hex[:10]}:"}


@pytest.fixture
def events(hub: Hub) -> Iterator[EventLog]:
    log = EventLog()
    hub.pm.register(log, name="tests.events")
    yield log
    hub.pm.unregister(name="tests.events")




@pytest.fixture
def make_app(data_dir: Path) -> Iterator[Callable[..., tuple[Hub, TestClient]]]:
    """make_app(**access_settings) -> (hub, client): the real app, models `echo` and `advanced`."""
    opened: list[tuple[Hub, TestClient]] = []

    def factory(settings: Settings | None = None, **access: Any) -> tuple[Hub, TestClient]:
        # A second app in one test gets its own data dir (and database).
        where = data_dir if not opened else data_dir.with_name(f"data{len(opened)}")
        settings = settings or make_settings(where, access=access)
        hub = build_hub(settings, pm=access_plugin_manager())
        hub.pm.register(FakePlugin(), name="tests.fake")
        log = EventLog()
        hub.pm.register(log, name="tests.events")
        add_fake_backend(hub, "fake1", ["echo", "advanced", "research"])
        from sovhub.app import create_app

        client = TestClient(create_app(hub))
        client.__enter__()
        opened.append((hub, client))
        return hub, client

    yield factory
    for hub, client in opened:
        client.__exit__(None, None, None)
        hub.close()


def org_with_key(hub: Hub, name: str, **limits: int) -> tuple[int, str, str]:
    """(org id, key secret, key prefix) of a new organization."""
    org = create_org(hub, name)
    key = create_key(hub, name, limits=dict(limits))
    return org.id, key.secret, key.prefix


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def chat(client: TestClient, secret: str, model: str = "echo", text: str = "hello world", **extra: Any) -> Any:
    return client.post(
        "/v1/chat/completions", headers=bearer(secret),
        json={"model": model, "messages": [{"role": "user", "content": text}], **extra},
    )
