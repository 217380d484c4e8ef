"""Upstream API keys are sealed by the vault in the database, and still authenticate upstream."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from sovhub.app import create_app
from sovhub.backends.catalog import add_backend, backend_configs, seal_plaintext_keys
from sovhub.errors import NotFound
from sovhub.hub import Hub, build_hub
from sovhub.sovereignty.crypto import ContentVault
from sovhub.store.tables import BackendRow
from tests.conftest import make_settings, reopen_vault, run_cli
from tests.upstream_server import FakeUpstream

KEY = "sk-upstream-7f3a9c2e41d8b6"
MSG = [{"role": "user", "content": "hi"}]


def _raw_rows(hub: Hub) -> list[bytes]:
    """Every byte of the backends table as stored, whatever the column."""
    with hub.db.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM backends")).all()
    return [repr(tuple(r)).encode() for r in rows]


def test_the_row_holds_no_key_and_the_backend_authenticates(hub: Hub, api_key: str) -> None:
    with FakeUpstream(["up-model"], api_key=KEY) as up:
        add_backend(hub, "up", url=up.url, models=["up-model"], api_key=KEY)
        assert all(KEY.encode() not in row for row in _raw_rows(hub))
        with hub.db.session() as s:
            row = s.scalar(select(BackendRow).where(BackendRow.name == "up"))
            assert row is not None and row.api_key is None and row.api_key_sealed
        with TestClient(create_app(hub), headers={"authorization": f"Bearer {api_key}"}) as client:
            r = client.post("/v1/chat/completions", json={"model": "up-model", "messages": MSG})
        assert r.status_code == 200, r.text
        assert {k.lower(): v for k, v in up.requests[-1]["headers"].items()}["authorization"] == f"Bearer {KEY}"


def test_the_fake_upstream_refuses_a_wrong_key(hub: Hub, api_key: str) -> None:
    """The check above could fail: an upstream given a wrong key answers 401, and the hub says so."""
    with FakeUpstream(["up-model"], api_key=KEY) as up:
        add_backend(hub, "up", url=up.url, models=["up-model"], api_key="sk-wrong-0000000000")
        with TestClient(create_app(hub), headers={"authorization": f"Bearer {api_key}"}) as client:
            r = client.post("/v1/chat/completions", json={"model": "up-model", "messages": MSG})
        assert r.status_code >= 400 and "choices" not in r.json()


def test_a_plaintext_key_from_an_older_version_is_sealed_at_the_next_read(hub: Hub) -> None:
    with hub.db.session() as s:  # as migration 0009 leaves a row written before it
        s.add(BackendRow(name="old", kind="openai", url="http://127.0.0.1:9/v1", models=["m"], api_key=KEY))
    assert [c.api_key for c in backend_configs(hub) if c.name == "old"] == [KEY]
    assert all(KEY.encode() not in row for row in _raw_rows(hub))
    assert seal_plaintext_keys(hub) == 0  # nothing left to seal


def test_a_sealed_key_needs_the_hub_key_store(data_dir: Path) -> None:
    """The sealed key opens only with this hub's keys: without the hub's KEK it is unreadable."""
    hub = build_hub(make_settings(data_dir))
    try:
        add_backend(hub, "up", url="http://127.0.0.1:9/v1", models=["m"], api_key=KEY)
        assert hub.services.get(ContentVault).keks.destroy("hub", 0)
        reopen_vault(hub)
        with pytest.raises(NotFound, match="unreadable"):
            backend_configs(hub)
    finally:
        hub.close()


def _plaintext_row(hub: Hub) -> None:
    with hub.db.session() as s:  # as a version before migration 0009 left it
        s.add(BackendRow(name="old", kind="openai", url="http://127.0.0.1:9/v1", models=["m"], api_key=KEY))


def test_migrate_seals_plaintext_keys_before_any_start(
    hub: Hub, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sovhub migrate` (a fleet's Job) seals them: no start, no catalog read needed."""
    (data_dir / "sovhub.toml").write_text("embedded_enabled = false\n", encoding="utf-8")
    _plaintext_row(hub)
    assert run_cli(data_dir, "migrate") == 0
    assert "sealed 1 upstream API key(s) stored in plaintext" in capsys.readouterr().out
    assert all(KEY.encode() not in row for row in _raw_rows(hub))
    assert [c.api_key for c in backend_configs(hub) if c.name == "old"] == [KEY]
    assert run_cli(data_dir, "migrate") == 0
    assert "sealed" not in capsys.readouterr().out  # nothing left


def test_migrate_without_the_master_key_says_the_keys_are_still_plaintext(
    hub: Hub, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (data_dir / "sovhub.toml").write_text("embedded_enabled = false\n", encoding="utf-8")
    _plaintext_row(hub)
    key_file = data_dir / "master.key"
    away = key_file.rename(data_dir.parent / "master.key.escrow")
    assert run_cli(data_dir, "migrate") == 0  # the schema is migrated all the same
    err = capsys.readouterr().err
    assert "1 upstream API key(s) are still stored in plaintext" in err and "master key file" in err
    assert any(KEY.encode() in row for row in _raw_rows(hub))
    away.rename(key_file)
    assert run_cli(data_dir, "migrate") == 0
    assert all(KEY.encode() not in row for row in _raw_rows(hub))
