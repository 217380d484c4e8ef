"""Background responses streamed: at their creation, and resumed later by
GET /v1/responses/{id}?stream=true&starting_after=N, live on the replica running them and replayed
(with the same sequence numbers) once they ended; every event valid against the spec."""

from __future__ import annotations

import json
import time

from fastapi.testclient import TestClient

from sovhub.accounts import authenticate, create_key
from sovhub.api.responses.background import replay
from sovhub.api.responses.store import ResponseStore, StoredState
from sovhub.app import create_app
from sovhub.hub import Hub
from tests.conftest import add_fake_backend
from tests.contract.schemas import assert_valid

WORDS = " ".join(f"w{i}" for i in range(60))


def _events(text: str) -> list[dict]:
    out = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            event = json.loads(lines["data"])
            assert lines["event"] == event["type"]
            assert_valid("ResponseStreamEvent", event)
            out.append(event)
    return out


def _text(events: list[dict]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


def _client(hub: Hub, api_key: str, delay: float = 0.0) -> TestClient:
    add_fake_backend(hub, "slow", ["slow"], delay=delay)
    return TestClient(create_app(hub), headers={"authorization": f"Bearer {api_key}"})


def _wait_status(client: TestClient, rid: str, wanted: str) -> dict:
    deadline = time.monotonic() + 15
    while True:
        body = client.get(f"/v1/responses/{rid}").json()
        if body["status"] == wanted or time.monotonic() > deadline:
            return body
        time.sleep(0.02)


def test_a_background_response_created_with_stream_sends_its_events(hub: Hub, fake_plugin, api_key: str) -> None:
    with _client(hub, api_key) as client:
        r = client.post("/v1/responses", json={"model": "slow", "input": WORDS, "background": True, "stream": True})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/event-stream")
        events = _events(r.text)
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
        assert events[0]["response"]["background"] is True
        assert _text(events) == WORDS
        rid = events[0]["response"]["id"]
        stored = client.get(f"/v1/responses/{rid}").json()
        assert stored["status"] == "completed" and stored == events[-1]["response"]
        # Replayed from the store: the very events, with their numbers; resumed after N.
        again = _events(client.get(f"/v1/responses/{rid}?stream=true").text)
        assert again == events
        resumed = _events(client.get(f"/v1/responses/{rid}", params={"stream": "true", "starting_after": 5}).text)
        assert resumed == events[6:]
        past = client.get(f"/v1/responses/{rid}", params={"stream": "true", "starting_after": 10_000})
        assert past.status_code == 200 and _events(past.text) == []


def test_a_stream_resumed_while_the_run_goes_on_follows_it_live(hub: Hub, fake_plugin, api_key: str) -> None:
    with _client(hub, api_key, delay=0.02) as client:
        queued = client.post("/v1/responses", json={"model": "slow", "input": WORDS, "background": True}).json()
        while fake_plugin.instances.get("slow") is None or fake_plugin.instances["slow"].yielded < 10:
            time.sleep(0.01)
        with client.stream("GET", f"/v1/responses/{queued['id']}",
                           params={"stream": "true", "starting_after": 3}) as r:
            assert r.status_code == 200
            body = "".join(r.iter_text())
            assert fake_plugin.instances["slow"].yielded > 10
        events = _events(body)
        assert events[0]["sequence_number"] == 4 and events[-1]["type"] == "response.completed"
        assert [e["sequence_number"] for e in events] == list(range(4, 4 + len(events)))
        full = _events(client.get(f"/v1/responses/{queued['id']}?stream=true").text)
        assert full[4:] == events and _text(full) == WORDS


def test_leaving_a_background_stream_does_not_cancel_the_run(hub: Hub, fake_plugin, api_key: str) -> None:
    with _client(hub, api_key, delay=0.01) as client:
        with client.stream("POST", "/v1/responses",
                           json={"model": "slow", "input": WORDS, "background": True, "stream": True}) as r:
            lines = r.iter_lines()
            first = next(lines)
            while not first.startswith("data: "):
                first = next(lines)
            rid = json.loads(first[6:])["response"]["id"]
        done = _wait_status(client, rid, "completed")
        assert done["status"] == "completed" and done["output"][0]["content"][0]["text"] == WORDS


def test_a_cancelled_background_stream_ends_without_a_terminal_event(hub: Hub, fake_plugin, api_key: str) -> None:
    with _client(hub, api_key, delay=0.02) as client:
        queued = client.post("/v1/responses", json={"model": "slow", "input": WORDS, "background": True}).json()
        while fake_plugin.instances.get("slow") is None or fake_plugin.instances["slow"].yielded < 5:
            time.sleep(0.01)
        assert client.post(f"/v1/responses/{queued['id']}/cancel").json()["status"] == "cancelled"
        events = _events(client.get(f"/v1/responses/{queued['id']}?stream=true").text)
        assert events and events[0]["type"] == "response.created"
        assert not any(e["type"].startswith(("response.completed", "response.failed")) for e in events)
        assert WORDS.startswith(_text(events))


def test_a_refused_background_run_streams_a_synthesized_failure(hub: Hub, fake_plugin, api_key: str) -> None:
    add_fake_backend(hub, "down", ["down"], fail=True)
    with TestClient(create_app(hub), headers={"authorization": f"Bearer {api_key}"}) as client:
        r = client.post("/v1/responses", json={"model": "down", "input": "x", "background": True, "stream": True})
        assert r.status_code == 200
        events = _events(r.text)
        assert [e["type"] for e in events] == ["response.created", "error", "response.failed"]
        assert [e["sequence_number"] for e in events] == [0, 1, 2]
        assert events[-1]["response"]["status"] == "failed" and events[1]["message"]


def test_replay_synthesizes_only_a_missing_terminal_event() -> None:
    response = {"id": "resp_x", "object": "response", "status": "failed", "background": True,
                "error": {"code": "server_error", "message": "the replica stopped"}, "output": []}
    started = [{"type": "response.created", "response": {}, "sequence_number": 0},
               {"type": "response.in_progress", "response": {}, "sequence_number": 1}]
    out = replay(StoredState(response, [], [], started))
    assert [e["type"] for e in out] == ["response.created", "response.in_progress", "error", "response.failed"]
    assert [e["sequence_number"] for e in out] == [0, 1, 2, 3]
    ended = [*started, {"type": "response.completed", "response": {}, "sequence_number": 2}]
    assert replay(StoredState({**response, "status": "completed"}, [], [], ended)) == ended
    assert replay(StoredState({**response, "status": "cancelled"}, [], [], started)) == started
    assert [e["type"] for e in replay(StoredState({**response, "status": "incomplete"}, [], [], []))] == [
        "response.created", "response.incomplete"]


def test_background_stream_errors(hub: Hub, fake_plugin, api_key: str) -> None:
    with _client(hub, api_key) as client:
        plain = client.post("/v1/responses", json={"model": "slow", "input": "x"}).json()
        done = client.post("/v1/responses", json={"model": "slow", "input": "x", "background": True}).json()
        _wait_status(client, done["id"], "completed")
        cases = [
            (f"/v1/responses/{plain['id']}?stream=true", 400, "stream"),  # not a background one
            ("/v1/responses/resp_missing?stream=true", 404, "response_id"),
            (f"/v1/responses/{done['id']}?starting_after=2", 400, "starting_after"),  # without stream
            (f"/v1/responses/{done['id']}?stream=true&starting_after=-1", 400, None),
            (f"/v1/responses/{done['id']}?stream=maybe", 400, None),
        ]
        for url, status, param in cases:
            r = client.get(url)
            assert r.status_code == status, (url, r.text)
            assert_valid("ErrorResponse", r.json())
            if param:
                assert r.json()["error"]["param"] == param, (url, r.text)
        # Another organization's key sees nothing of it.
        other = create_key(hub, "other").secret if _org(hub, "other") else ""
        r = client.get(f"/v1/responses/{done['id']}?stream=true", headers={"authorization": f"Bearer {other}"})
        assert r.status_code == 404
        # store: false stays refused for background (it could not be read back).
        r = client.post("/v1/responses", json={"model": "slow", "input": "x", "background": True, "stream": True,
                                               "store": False})
        assert r.status_code == 400


def _org(hub: Hub, name: str) -> bool:
    from sovhub.accounts import create_org

    create_org(hub, name)
    return True


def test_a_stream_on_another_replica_waits_for_the_end_then_replays(hub: Hub, fake_plugin, api_key: str) -> None:
    """A run stored as in progress that this replica does not run (another replica does, beating):
    the stream waits, and replays once that replica stored the end."""
    import threading

    principal = authenticate(hub, api_key)
    store = hub.services.get(ResponseStore)
    with _client(hub, api_key) as client:
        real = client.post("/v1/responses", json={"model": "slow", "input": "a b c", "background": True}).json()
        _wait_status(client, real["id"], "completed")
        # The status is stored as the run ends and its events a moment later (the terminal one with them):
        # wait for that second save, bounded, rather than read the first.
        deadline = time.monotonic() + 30
        done = store.load(principal, real["id"])
        while done.events[-1]["type"] != "response.completed" and time.monotonic() < deadline:
            time.sleep(0.05)
            done = store.load(principal, real["id"])
        assert done.events[-1]["type"] == "response.completed"
        ended = {**done.response, "id": "resp_elsewhere"}
        running = {**ended, "status": "in_progress", "completed_at": None}
        first = [{**done.events[0], "response": running}]
        store.save(principal, StoredState(running, [], [], first), previous_id=None)

        def other_replica_ends() -> None:
            time.sleep(1.5)
            store.beat(["resp_elsewhere"])
            store.save(principal, StoredState(ended, [], [], [*first, {**done.events[-1], "response": ended,
                                                                        "sequence_number": 1}]),
                       previous_id=None, create=False)

        thread = threading.Thread(target=other_replica_ends)
        thread.start()
        began = time.monotonic()
        events = _events(client.get("/v1/responses/resp_elsewhere?stream=true").text)
        thread.join()
        assert time.monotonic() - began >= 1.4
        assert [e["type"] for e in events] == ["response.created", "response.completed"]
        assert events[-1]["response"]["status"] == "completed"
