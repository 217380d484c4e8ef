"""Fixtures for sovereignty tests: a hub over SQLite and PostgreSQL, people, a signed-in session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sovhub.hub import Hub, build_hub
from sovhub.store.tables import User
from tests.conftest import add_fake_backend, make_settings
from tests.fakes import FakePlugin


def new_hub(data_dir: Path, database_url: str | None, **overrides: Any) -> Hub:
    overrides.setdefault("safety", {"enabled": False})  # guards are not under test here, and slow to load
    hub = build_hub(make_settings(data_dir, database_url=database_url, **overrides))
    hub.pm.hook.sovhub_init(hub=hub)
    return hub


@pytest.fixture
def shub(data_dir: Path, database_url: str | None) -> Iterator[Hub]:
    """An initialised hub (master key, signing key), on SQLite and on PostgreSQL."""
    hub = new_hub(data_dir, database_url)
    yield hub
    hub.close()


def add_user(hub: Hub, email: str, *, staff: bool = False) -> int:
    with hub.db.session() as s:
        user = User(email=email, display_name=email.split("@")[0], is_staff=staff)
        s.add(user)
        s.flush()
        return user.id


def session_cookie(hub: Hub, user_id: int, csrf: str = "csrf-secret") -> dict[str, str]:
    """A signed-in browser's cookie: a real server-side session of `user_id` with this CSRF secret."""
    from sovhub.access.session_store import create_session
    from sovhub.access.sessions import session_serializer

    token = create_session(hub, user_id, acr=None, idp=None)
    value = session_serializer(hub.settings.signing_key).dumps({"s": token, "c": csrf})
    return {hub.settings.access.session_cookie: value}


@pytest.fixture
def sov_client(shub: Hub) -> Iterator[tuple[TestClient, FakePlugin]]:
    """The real app over `shub` with a fake home backend serving `echo`, authenticated as org acme."""
    from sovhub.accounts import create_key, create_org
    from sovhub.app import create_app

    plugin = FakePlugin()
    shub.pm.register(plugin, name="tests.fake")
    create_org(shub, "acme")
    secret = create_key(shub, "acme").secret
    add_fake_backend(shub, "fake1", ["echo"])
    with TestClient(create_app(shub), headers={"authorization": f"Bearer {secret}"}) as client:
        yield client, plugin
    shub.pm.unregister(name="tests.fake")
