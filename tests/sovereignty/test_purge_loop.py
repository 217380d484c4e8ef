"""The retention purge runs by itself while the hub serves, and survives a failed round."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from sovhub.accounts import create_key, create_org
from sovhub.app import create_app
from sovhub.sovereignty import content_store as conversations
from sovhub.sovereignty.content_store import ConversationStore
from sovhub.sovereignty.tables import StoredConversation
from sovhub.store.base import utcnow
from tests.conftest import add_fake_backend
from tests.fakes import FakePlugin

from .conftest import new_hub


def _count(hub: Any) -> int:
    with hub.db.session() as s:
        return len(list(s.scalars(select(StoredConversation.id))))


def test_expired_content_is_purged_while_serving_even_after_a_failed_round(
    data_dir: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = conversations.purge_expired
    rounds: list[str] = []

    def flaky(hub: Any, **kwargs: Any) -> int:
        if not rounds:
            rounds.append("failed")
            raise OperationalError("DELETE", {}, Exception("database is locked"))
        rounds.append("ran")
        return real(hub, **kwargs)

    monkeypatch.setattr(conversations, "purge_expired", flaky)
    hub = new_hub(data_dir, database_url, sovereignty={"purge_interval_s": 0.1})
    plugin = FakePlugin()
    hub.pm.register(plugin, name="tests.fake")
    try:
        create_org(hub, "acme")
        secret = create_key(hub, "acme").secret
        add_fake_backend(hub, "fake1", ["echo"])
        with caplog.at_level(logging.ERROR, logger="sovhub"), TestClient(
            create_app(hub), headers={"authorization": f"Bearer {secret}"}
        ) as client:
            for text in ("keep me", "expire me"):
                r = client.post("/v1/chat/completions",
                                json={"model": "echo", "messages": [{"role": "user", "content": text}]})
                assert r.status_code == 200, r.text
            client.portal.call(hub.services.get(ConversationStore).flush)  # type: ignore[union-attr]
            assert _count(hub) == 2
            with hub.db.session() as s:
                first = min(s.scalars(select(StoredConversation.id)))
                s.execute(update(StoredConversation).where(StoredConversation.id == first)
                          .values(expires_at=utcnow() - timedelta(minutes=1)))
            deadline = time.monotonic() + 10
            while _count(hub) == 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _count(hub) == 1, "the loop never purged the expired conversation"
        assert rounds[0] == "failed" and "ran" in rounds
        assert any("retention purge failed" in r.getMessage() for r in caplog.records)
    finally:
        hub.pm.unregister(name="tests.fake")
        hub.close()
