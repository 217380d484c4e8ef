"""The stored responses' background bookkeeping on SQLite and PostgreSQL: cancel marks, item
lookups, updates that never resurrect a deleted response, orphans failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from sovhub.accounts import authenticate, create_key, create_org
from sovhub.api.responses.store import ResponseStore, StoredState
from sovhub.errors import NotFound
from sovhub.hub import build_hub
from tests.conftest import make_settings


def _state(rid: str, status: str) -> StoredState:
    response = {"id": rid, "object": "response", "status": status, "background": True, "model": "m",
                "output": [{"id": f"msg_{rid}", "type": "message", "role": "assistant", "content": []}]}
    return StoredState(response, [{"id": f"in_{rid}", "type": "message", "role": "user", "content": []}], [])


def test_background_bookkeeping(data_dir: Path, database_url: str | None) -> None:
    hub = build_hub(make_settings(data_dir, database_url=database_url, safety={"enabled": False}))
    try:
        create_org(hub, "acme")
        create_org(hub, "rival")
        me = authenticate(hub, create_key(hub, "acme").secret)
        rival = authenticate(hub, create_key(hub, "rival").secret)
        store = hub.services.get(ResponseStore)
        assert store.save(me, _state("resp_a", "in_progress"), previous_id=None)
        # A cancel mark wins over a later running state, not over the run's final one.
        assert store.mark_cancelled(me, "resp_a").response["status"] == "cancelled"
        assert store.status("resp_a") == "cancelled"
        assert not store.save(me, _state("resp_a", "in_progress"), previous_id=None, create=False)
        assert store.save(me, _state("resp_a", "cancelled"), previous_id=None, create=False)
        with pytest.raises(NotFound):
            store.mark_cancelled(rival, "resp_a")
        # Items are found among the owner's responses only.
        assert store.find_item(me, "msg_resp_a")["type"] == "message"
        assert store.find_item(me, "in_resp_a")["role"] == "user"
        with pytest.raises(NotFound):
            store.find_item(rival, "msg_resp_a")
        # A deleted response is not written again by its run.
        store.delete(me, "resp_a")
        assert not store.save(me, _state("resp_a", "completed"), previous_id=None, create=False)
        assert store.status("resp_a") is None
        # Orphans: queued and running ones fail, ended ones stay.
        store.save(me, _state("resp_q", "queued"), previous_id=None)
        store.save(me, _state("resp_c", "completed"), previous_id=None)
        assert store.fail_orphans() == 1
        assert store.load(me, "resp_q").response["status"] == "failed"
        assert store.load(me, "resp_c").response["status"] == "completed"
    finally:
        hub.close()
