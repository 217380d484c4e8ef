"""Stored API conversations: encrypted at rest, no plaintext in the file or a dump, store:false, retention."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from sovhub.errors import InvalidRequest
from sovhub.hub import Hub
from sovhub.metering import Meter
from sovhub.sovereignty.conversations import ConversationStore, purge_expired, set_retention
from sovhub.sovereignty.crypto import ContentVault
from sovhub.sovereignty.tables import StoredConversation
from sovhub.store.base import utcnow
from tests.fakes import FakePlugin

from .conftest import new_hub

SECRET = "Zmiana hasla do konta 4fj29XqP w banku"


def _chat(client: TestClient, content: str, **extra: object) -> None:
    r = client.post("/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user",
                                                                                  "content": content}], **extra})
    assert r.status_code == 200, r.text


def _flush(hub: Hub, client: TestClient) -> None:
    client.portal.call(hub.services.get(ConversationStore).flush)  # type: ignore[union-attr]


def _rows(hub: Hub) -> list[StoredConversation]:
    with hub.db.session() as s:
        return list(s.scalars(select(StoredConversation).order_by(StoredConversation.id)))


def _dump(hub: Hub) -> bytes:
    if hub.db.is_sqlite:
        hub.db.dispose()  # checkpoint the WAL into the file as far as possible; read both anyway
        path = hub.settings.data_dir / "sovhub.db"
        wal = path.with_name(path.name + "-wal")
        return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    url = hub.db.engine.url
    schema = (url.query.get("options") or "").split("search_path%3D")[-1].split("search_path=")[-1]
    result = subprocess.run(
        ["pg_dump", "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or "postgres",
         "-n", str(schema), url.database or "test"], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert b"api_conversations" in result.stdout
    return result.stdout


def test_chat_content_is_encrypted_at_rest(shub: Hub, sov_client: tuple[TestClient, FakePlugin]) -> None:
    client, _ = sov_client
    _chat(client, SECRET)
    _flush(shub, client)
    rows = _rows(shub)
    assert len(rows) == 1 and rows[0].owner_kind == "org"
    stored = json.loads(shub.services.get(ContentVault).decrypt_for_org(rows[0].owner_id, rows[0].content))
    assert stored["messages"][0]["content"] == SECRET and SECRET in stored["completion"]
    dump = _dump(shub)
    assert b"api_conversations" in dump or shub.db.is_sqlite
    for needle in (SECRET, "4fj29XqP", "hasla do konta"):
        assert needle.encode() not in dump, f"plaintext {needle!r} found at rest"


def test_store_false_and_zero_retention_store_nothing(shub: Hub, sov_client: tuple[TestClient, FakePlugin]) -> None:
    client, _ = sov_client
    _chat(client, "do not keep this", store=False)
    _flush(shub, client)
    assert _rows(shub) == []
    set_retention(shub, "acme", 0)
    _chat(client, "zero retention org")
    _flush(shub, client)
    assert _rows(shub) == []
    client.portal.call(shub.services.get(Meter).flush)
    from sovhub.store.tables import UsageRecord

    with shub.db.session() as s:
        assert s.scalar(select(func.count()).select_from(UsageRecord)) == 2  # usage is still counted


def test_retention_purge_deletes_expired(shub: Hub, sov_client: tuple[TestClient, FakePlugin]) -> None:
    client, _ = sov_client
    _chat(client, "one")
    _chat(client, "two")
    _flush(shub, client)
    assert len(_rows(shub)) == 2
    assert purge_expired(shub) == 0
    assert purge_expired(shub, now=utcnow() + timedelta(days=31)) == 2
    assert _rows(shub) == []
    _chat(client, "three")
    _flush(shub, client)
    set_retention(shub, "acme", 1)  # shortening applies to content already stored
    assert purge_expired(shub, now=utcnow() + timedelta(days=2)) == 1
    from sovhub.sovereignty.audit import counts_by_event

    assert counts_by_event(shub, ["retention.purged", "retention.set"]) == {"retention.purged": 2,
                                                                           "retention.set": 1}


def test_retention_bad_input(shub: Hub) -> None:
    from sovhub.accounts import create_org
    from sovhub.errors import NotFound

    create_org(shub, "acme")
    with pytest.raises(InvalidRequest, match="between 0 and 36500"):
        set_retention(shub, "acme", -1)
    with pytest.raises(NotFound):
        set_retention(shub, "nobody", 3)


def test_retention_cli(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sovhub.accounts import create_org
    from sovhub.cli import main

    hub = new_hub(data_dir, None)
    create_org(hub, "acme")
    for args in (["retention", "set", "acme", "0"], ["retention", "purge"], ["retention", "set", "acme"]):
        try:
            main(["--data-dir", str(data_dir), *args])
        except SystemExit as exc:
            assert exc.code == (2 if len(args) == 3 else 0)  # click usage errors exit 2
    captured = capsys.readouterr()
    assert "retention of acme: 0 days" in captured.out and "purged 0 conversations" in captured.out
    assert "give DAYS or --default" in captured.err
    with hub.db.session() as s:
        assert s.execute(text("SELECT retention_days FROM org_retention")).scalar() == 0
    hub.close()
