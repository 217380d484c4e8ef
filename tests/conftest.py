"""Shared fixtures: an isolated data dir and environment per test, a hub, an app with a fake backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from sovhub.accounts import create_key, create_org
from sovhub.hub import Hub, build_hub
from sovhub.settings import Settings, load_settings
from sovhub.sovereignty.crypto import ContentVault, open_vault
from sovhub.store.tables import BackendRow
from tests.fakes import FakePlugin

REQUIRE_SERVICES = os.environ.get("SOVHUB_REQUIRE_SERVICES") == "1"


def need_service(reason: str) -> None:
    """Skip with a clear reason, or fail when CI demands the services."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing (SOVHUB_REQUIRE_SERVICES=1): {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("SOVHUB_") and name not in ("SOVHUB_TEST_DATABASE_URL", "SOVHUB_TEST_REDIS_URL",
                                                      "SOVHUB_REQUIRE_SERVICES"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def _pg_schema_url(base: str) -> tuple[str, str]:
    schema = "t_" + uuid.uuid4().hex[:12]
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", schema


def _drop_schema(base: str, schema: str) -> None:
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def postgres_url() -> str | None:
    url = os.environ.get("SOVHUB_TEST_DATABASE_URL")
    if url and url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, data_dir: Path) -> Iterator[str | None]:
    """Parametrises a test over SQLite and (when SOVHUB_TEST_DATABASE_URL is set) PostgreSQL."""
    if request.param == "sqlite":
        yield None
        return
    yield from _postgres_schema()


@pytest.fixture
def postgres_database_url() -> Iterator[str]:
    """A PostgreSQL schema of its own, for a test that is only about PostgreSQL."""
    yield from _postgres_schema()


def _postgres_schema() -> Iterator[str]:
    base = postgres_url()
    if not base:
        need_service("PostgreSQL not configured: set SOVHUB_TEST_DATABASE_URL")
    assert base is not None
    try:
        url, schema = _pg_schema_url(base)
    except Exception as exc:  # noqa: BLE001 - any connection failure means the service is missing
        need_service(f"PostgreSQL at {base} not reachable: {exc}")
        raise
    yield url
    _drop_schema(base, schema)


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    overrides.setdefault("embedded_enabled", False)
    return load_settings(data_dir=str(data_dir), **overrides)


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return make_settings(data_dir)


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    h = build_hub(settings)
    yield h
    h.close()


@pytest.fixture
def fake_plugin(hub: Hub) -> Iterator[FakePlugin]:
    plugin = FakePlugin()
    hub.pm.register(plugin, name="tests.fake")
    yield plugin
    hub.pm.unregister(name="tests.fake")


def reopen_vault(hub: Hub) -> ContentVault:
    """Open the vault again, as a restarted process would, and serve that one from the hub."""
    vault = open_vault(hub)
    hub.services.replace(ContentVault, vault)
    return vault


def add_fake_backend(hub: Hub, name: str, models: list[str], **options: Any) -> None:
    with hub.db.session() as s:
        s.add(BackendRow(name=name, kind="fake", models=models, jurisdiction=options.pop("jurisdiction", None)
                         or hub.settings.sovereignty.jurisdiction, operator="tests", options=options))


@pytest.fixture
def api_key(hub: Hub) -> str:
    create_org(hub, "acme")
    return create_key(hub, "acme").secret


@pytest.fixture
def app_client(hub: Hub, fake_plugin: FakePlugin, api_key: str) -> Iterator[TestClient]:
    """The real app over the hub, serving model `echo` from a fake backend; authenticated as acme."""
    from sovhub.app import create_app

    add_fake_backend(hub, "fake1", ["echo"])
    app = create_app(hub)
    with TestClient(app, headers={"authorization": f"Bearer {api_key}"}) as client:
        yield client


def run_cli(data_dir: Path, *args: str) -> int:
    """Run `sovhub --data-dir DATA_DIR ARGS` in this process (the real entry point); its exit code."""
    from sovhub.cli import main

    try:
        main(["--data-dir", str(data_dir), *args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
