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


def test_heartbeats_and_stale_runs(data_dir: Path, database_url: str | None) -> None:
    from datetime import timedelta

    from sovhub.api.responses.tables import StoredResponse
    from sovhub.store.base import utcnow

    hub = build_hub(make_settings(data_dir, database_url=database_url, safety={"enabled": False}))
    try:
        create_org(hub, "acme")
        me = authenticate(hub, create_key(hub, "acme").secret)
        store = hub.services.get(ResponseStore)
        for rid, status in (("resp_old", "in_progress"), ("resp_beating", "in_progress"), ("resp_mine", "queued"),
                            ("resp_done", "completed"), ("resp_read", "in_progress")):
            store.save(me, _state(rid, status), previous_id=None)
        with hub.db.session() as s:
            assert s.get(StoredResponse, "resp_done").heartbeat_at is None  # an ended one never beats
            assert s.get(StoredResponse, "resp_old").heartbeat_at is not None
        now = utcnow()
        long_ago = now - timedelta(minutes=10)
        store.beat(["resp_old", "resp_mine", "resp_read", "resp_done"], now=long_ago)
        store.beat(["resp_beating"], now=now)
        with hub.db.session() as s:
            assert s.get(StoredResponse, "resp_done").heartbeat_at is None
        before = now - timedelta(seconds=30)
        # One read fails only its own response.
        assert store.fail_stale(before, only="resp_read") == 1
        assert store.fail_stale(before, only="resp_beating") == 0
        assert store.load(me, "resp_read").response["status"] == "failed"
        # The sweep: stale ones fail, a fresh heartbeat, this replica's own runs and ended ones stay.
        assert store.fail_stale(before, keep=frozenset({"resp_mine"})) == 1
        old = store.load(me, "resp_old").response
        assert old["status"] == "failed" and "replica" in old["error"]["message"]
        assert store.status("resp_beating") == "in_progress"
        assert store.status("resp_mine") == "queued"
        assert store.status("resp_done") == "completed"
        # A failed one beats no more; failing again changes nothing.
        store.beat(["resp_old"])
        assert store.fail_stale(utcnow() + timedelta(seconds=1), only="resp_old") == 0
        # Events are kept with the stored state.
        events = [{"type": "response.created", "sequence_number": 0}]
        store.save(me, StoredState(_state("resp_ev", "completed").response, [], [], events), previous_id=None)
        assert store.load(me, "resp_ev").events == events
    finally:
        hub.close()


def test_a_heartbeat_written_meanwhile_wins_over_the_sweep(data_dir: Path, database_url: str | None) -> None:
    """The sweep fails a row only as it read it: the replica beating between the read and the write keeps it."""
    from datetime import timedelta

    from sqlalchemy import event

    from sovhub.store.base import utcnow

    hub = build_hub(make_settings(data_dir, database_url=database_url, safety={"enabled": False}))
    try:
        create_org(hub, "acme")
        me = authenticate(hub, create_key(hub, "acme").secret)
        store = hub.services.get(ResponseStore)
        store.save(me, _state("resp_race", "in_progress"), previous_id=None)
        store.beat(["resp_race"], now=utcnow() - timedelta(minutes=5))
        engine = hub.db.engine
        fired: list[bool] = []

        def beat_first(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
            if statement.lstrip().upper().startswith("UPDATE API_RESPONSES SET STATUS") and not fired:
                fired.append(True)
                with engine.begin() as other:  # the running replica's heartbeat lands just before
                    from sqlalchemy import text

                    other.execute(text("update api_responses set heartbeat_at = :t where id = 'resp_race'"),
                                  {"t": utcnow()})

        event.listen(engine, "before_cursor_execute", beat_first)
        try:
            assert store.fail_stale(utcnow() - timedelta(seconds=30)) == 0
        finally:
            event.remove(engine, "before_cursor_execute", beat_first)
        assert fired and store.status("resp_race") == "in_progress"
    finally:
        hub.close()
