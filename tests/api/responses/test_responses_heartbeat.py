"""One replica's side of the heartbeat: its own runs stay alive however long they run (it beats for them, and a
read never fails a run it holds); a run another replica left (stale) fails on the next read, cancel or stream."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sovhub.accounts import authenticate
from sovhub.api.responses.service import ResponsesService
from sovhub.api.responses.store import ResponseStore, StoredState
from sovhub.app import create_app
from sovhub.hub import Hub
from sovhub.settings import Settings
from sovhub.store.base import utcnow
from tests.conftest import add_fake_backend, make_settings
from tests.contract.schemas import assert_valid

#: Stale after 6 x 0.05 s: a run of a few seconds outlives the window many times.
BEAT_S = 0.05


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return make_settings(data_dir, responses_heartbeat_s=BEAT_S)


def test_a_run_held_here_outlives_the_stale_window(hub: Hub, fake_plugin, api_key: str) -> None:
    add_fake_backend(hub, "slow", ["slow"], delay=0.15)
    words = " ".join(f"w{i}" for i in range(80))
    with TestClient(create_app(hub), headers={"authorization": f"Bearer {api_key}"}) as client:
        rid = client.post("/v1/responses", json={"model": "slow", "input": words, "background": True}).json()["id"]
        began = time.monotonic()
        seen = set()
        deadline = time.monotonic() + 20
        while True:
            status = client.get(f"/v1/responses/{rid}").json()["status"]
            seen.add(status)
            if status not in ("queued", "in_progress") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert status in ("completed", "incomplete") and "failed" not in seen, seen
        stale_s = hub.services.get(ResponsesService).background.stale_s
        assert stale_s == pytest.approx(6 * BEAT_S) and time.monotonic() - began > 3 * stale_s


def _left_by_another_replica(hub: Hub, client: TestClient, api_key: str, rid: str, age_s: float) -> None:
    """A real response's stored state, saved as running by a replica that last beat `age_s` ago."""
    principal = authenticate(hub, api_key)
    store = hub.services.get(ResponseStore)
    real = client.post("/v1/responses", json={"model": "quick", "input": "a b", "background": True}).json()
    deadline = time.monotonic() + 10
    while client.get(f"/v1/responses/{real['id']}").json()["status"] != "completed":
        assert time.monotonic() < deadline, "the real response never completed"
        time.sleep(0.02)
    done = store.load(principal, real["id"])
    running = {**done.response, "id": rid, "status": "in_progress", "completed_at": None}
    store.save(principal, StoredState(running, [], [], done.events[:2]), previous_id=None)
    store.beat([rid], now=utcnow() - timedelta(seconds=age_s))


def test_a_stale_run_fails_on_read_cancel_and_stream(hub: Hub, fake_plugin, api_key: str) -> None:
    add_fake_backend(hub, "quick", ["quick"])
    with TestClient(create_app(hub), headers={"authorization": f"Bearer {api_key}"}) as client:
        for rid in ("resp_read", "resp_cancel", "resp_stream"):
            _left_by_another_replica(hub, client, api_key, rid, age_s=60)
        failed = client.get("/v1/responses/resp_read").json()
        assert_valid("Response", failed)
        assert failed["status"] == "failed" and "stopped" in failed["error"]["message"]
        cancelled = client.post("/v1/responses/resp_cancel/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "failed"  # it ended before the cancel
        stream = client.get("/v1/responses/resp_stream", params={"stream": "true", "starting_after": 0})
        types = [line[7:] for line in stream.text.splitlines() if line.startswith("event: ")]
        assert types == ["response.in_progress", "error", "response.failed"]
        # A fresh heartbeat (its replica alive) is left running.
        _left_by_another_replica(hub, client, api_key, "resp_fresh", age_s=0)
        assert client.get("/v1/responses/resp_fresh").json()["status"] == "in_progress"
