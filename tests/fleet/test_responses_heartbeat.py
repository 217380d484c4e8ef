"""Background responses a killed replica left: its heartbeat goes stale and the other replica fails them, on
the next read and by its leased sweep; runs of a live replica, older than the stale window, are left alone."""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.upstream_server import FakeUpstream

from .conftest import Fleet

pytestmark = [pytest.mark.slow, pytest.mark.services]

#: Heartbeats every 0.2 s: a run is stale after 1.2 s without one.
FAST_BEAT = {"SOVHUB_RESPONSES_HEARTBEAT_S": "0.2"}
#: Admitted and waiting for the upstream's answer, or generating it.
RUNNING = ("queued", "in_progress")


def _status(fleet: Fleet, rid: str) -> str:
    engine = create_engine(fleet.database_url)
    try:
        with engine.connect() as c:
            return str(c.execute(text("select status from api_responses where id = :id"), {"id": rid}).scalar())
    finally:
        engine.dispose()


def test_runs_of_a_killed_replica_are_failed_and_a_live_ones_are_not(make_fleet: object) -> None:
    # Each answer takes 20 s upstream (non-streamed: all at the end): every run is still going.
    fleet: Fleet = make_fleet(FakeUpstream(["tiny"], delay=4.0))  # type: ignore[operator]
    victim, other = fleet.start(2, **FAST_BEAT)
    auth = {"authorization": f"Bearer {fleet.key}"}
    body = {"model": "tiny", "input": "hello", "background": True}
    with httpx.Client(timeout=30, headers=auth) as client:
        read_later = client.post(victim.url + "/v1/responses", json=body).json()["id"]
        swept = client.post(victim.url + "/v1/responses", json=body).json()["id"]
        alive = client.post(other.url + "/v1/responses", json=body).json()["id"]
        assert {_status(fleet, r) for r in (read_later, swept, alive)} <= set(RUNNING)
        time.sleep(2.0)  # older than the stale window: only heartbeats keep them alive
        assert {_status(fleet, r) for r in (read_later, swept, alive)} <= set(RUNNING)
        assert victim.proc is not None
        victim.proc.kill()  # SIGKILL: its runs end nothing
        victim.proc.wait(10)
        # Read from the surviving replica (it does not run them): failed once the heartbeat is stale.
        deadline = time.monotonic() + 15
        while True:
            got = client.get(f"{other.url}/v1/responses/{read_later}")
            assert got.status_code == 200, got.text
            if got.json()["status"] not in RUNNING:
                break
            assert time.monotonic() < deadline, "the killed replica's run stayed running"
            time.sleep(0.1)
        failed = got.json()
        assert failed["status"] == "failed" and "replica running this response stopped" in failed["error"]["message"]
        # The one nobody reads is failed by the sweep.
        deadline = time.monotonic() + 15
        while _status(fleet, swept) != "failed":
            assert time.monotonic() < deadline, "the sweep never failed the killed replica's run"
            time.sleep(0.1)
        stream = client.get(f"{other.url}/v1/responses/{swept}", params={"stream": "true"})
        assert stream.status_code == 200 and "event: response.failed" in stream.text
        # The live replica's run, far older than the stale window, is still running: its heartbeat is fresh.
        assert _status(fleet, alive) in RUNNING
        assert client.get(f"{other.url}/v1/responses/{alive}").json()["status"] in RUNNING
        assert client.post(f"{other.url}/v1/responses/{alive}/cancel").json()["status"] == "cancelled"
