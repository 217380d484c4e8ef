"""Background responses: queued at once, polled to their end, cancelled (here or from another
replica), billed for what ran, ended when the hub stops; and input token counts."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sovhub.accounts import authenticate
from sovhub.api.chat.service import prompt_text
from sovhub.api.responses.background import POLL_S
from sovhub.api.responses.store import ResponseStore
from sovhub.api.responses.tables import StoredResponse
from sovhub.app import create_app
from sovhub.backends.base import estimate_tokens
from sovhub.hub import Hub
from sovhub.metering import Meter
from sovhub.store.tables import UsageRecord
from tests.conftest import add_fake_backend
from tests.contract.schemas import assert_valid

WORDS = " ".join(f"w{i}" for i in range(400))


def _poll(client: TestClient, response_id: str, until: tuple[str, ...], timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        got = client.get(f"/v1/responses/{response_id}")
        assert got.status_code == 200, got.text
        body = got.json()
        assert_valid("Response", body)
        if body["status"] in until or time.monotonic() > deadline:
            return body
        time.sleep(0.02)


def _usage(client: TestClient, hub: Hub) -> list[UsageRecord]:
    client.portal.call(hub.services.get(Meter).flush)
    with hub.db.session() as s:
        return list(s.scalars(select(UsageRecord).order_by(UsageRecord.id)))


def _slow(hub: Hub, api_key: str, delay: float = 0.02) -> TestClient:
    add_fake_backend(hub, "slow", ["slow"], delay=delay)
    return TestClient(create_app(hub), headers={"authorization": f"Bearer {api_key}"})


def test_a_background_response_is_queued_then_polled_to_completion(app_client: TestClient, hub: Hub) -> None:
    r = app_client.post("/v1/responses", json={"model": "echo", "input": "hello big world", "background": True})
    assert r.status_code == 200, r.text
    queued = r.json()
    assert_valid("Response", queued)
    assert queued["status"] == "queued" and queued["background"] is True and queued["output"] == []
    done = _poll(app_client, queued["id"], ("completed",))
    assert done["status"] == "completed" and done["output"][0]["content"][0]["text"] == "hello big world"
    assert done["usage"]["output_tokens"] == 3 and done["completed_at"] is not None
    assert [(u.model, u.completion_tokens) for u in _usage(app_client, hub)] == [("echo", 3)]
    # Continued like any stored response.
    more = app_client.post("/v1/responses", json={"model": "echo", "input": "next", "previous_response_id": done["id"]})
    assert more.status_code == 200


def test_cancel_stops_the_generation_and_bills_what_ran(hub: Hub, fake_plugin, api_key: str) -> None:
    with _slow(hub, api_key) as client:
        queued = client.post("/v1/responses", json={"model": "slow", "input": WORDS, "background": True}).json()
        _poll(client, queued["id"], ("in_progress",))
        while fake_plugin.instances["slow"].yielded < 5:
            time.sleep(0.01)
        r = client.post(f"/v1/responses/{queued['id']}/cancel")
        assert r.status_code == 200, r.text
        cancelled = r.json()
        assert_valid("Response", cancelled)
        assert cancelled["status"] == "cancelled"
        produced = fake_plugin.instances["slow"].yielded
        time.sleep(0.2)
        assert fake_plugin.instances["slow"].yielded == produced, "generation went on after the cancel"
        assert 0 < produced < 400
        # The text that ran is kept, and what it cost.
        text = cancelled["output"][0]["content"][0]["text"]
        assert text and WORDS.startswith(text)
        [row] = _usage(client, hub)
        assert cancelled["usage"]["output_tokens"] == row.completion_tokens > 0
        # Cancelling again changes nothing; the stored one says cancelled.
        assert client.post(f"/v1/responses/{queued['id']}/cancel").json() == cancelled
        assert client.get(f"/v1/responses/{queued['id']}").json()["status"] == "cancelled"
        assert len(_usage(client, hub)) == 1


def test_a_cancel_from_another_replica_is_seen_by_the_run(hub: Hub, fake_plugin, api_key: str) -> None:
    """Another replica writes the cancel into the store; the replica running it reads it within POLL_S."""
    with _slow(hub, api_key) as client:
        queued = client.post("/v1/responses", json={"model": "slow", "input": WORDS, "background": True}).json()
        _poll(client, queued["id"], ("in_progress",))
        hub.services.get(ResponseStore).mark_cancelled(authenticate(hub, api_key), queued["id"])
        started = time.monotonic()
        assert _poll(client, queued["id"], ("cancelled",))["status"] == "cancelled"
        # The run sees the mark, stops, and writes its own final state (with the usage billed) over it.
        deadline = time.monotonic() + POLL_S + 3
        done = client.get(f"/v1/responses/{queued['id']}").json()
        while "usage" not in done and time.monotonic() < deadline:
            time.sleep(0.05)
            done = client.get(f"/v1/responses/{queued['id']}").json()
        assert done["status"] == "cancelled" and time.monotonic() - started < POLL_S + 2
        produced = fake_plugin.instances["slow"].yielded
        time.sleep(0.3)
        assert fake_plugin.instances["slow"].yielded == produced < 400
        [row] = _usage(client, hub)
        assert done["usage"]["output_tokens"] == row.completion_tokens > 0


def test_a_response_deleted_while_it_runs_stops_and_stays_deleted(hub: Hub, fake_plugin, api_key: str) -> None:
    with _slow(hub, api_key) as client:
        queued = client.post("/v1/responses", json={"model": "slow", "input": WORDS, "background": True}).json()
        _poll(client, queued["id"], ("in_progress",))
        assert client.delete(f"/v1/responses/{queued['id']}").status_code == 200
        time.sleep(POLL_S + 0.5)
        produced = fake_plugin.instances["slow"].yielded
        time.sleep(0.2)
        assert fake_plugin.instances["slow"].yielded == produced < 400
        assert client.get(f"/v1/responses/{queued['id']}").status_code == 404
        with hub.db.session() as s:
            assert s.get(StoredResponse, queued["id"]) is None


def test_the_hub_stopping_ends_running_responses(hub: Hub, fake_plugin, api_key: str) -> None:
    with _slow(hub, api_key) as client:
        queued = client.post("/v1/responses", json={"model": "slow", "input": WORDS, "background": True}).json()
        _poll(client, queued["id"], ("in_progress",))
        while fake_plugin.instances["slow"].yielded < 3:
            time.sleep(0.01)
    with hub.db.session() as s:
        row = s.get(StoredResponse, queued["id"])
        assert row is not None and row.status == "failed"
    state = hub.services.get(ResponseStore).load(authenticate(hub, api_key), queued["id"])
    assert state.response["error"]["message"] and state.response["output"]


def test_a_background_response_the_backend_refuses_ends_failed(hub: Hub, fake_plugin, api_key: str) -> None:
    add_fake_backend(hub, "down", ["down"], fail=True)
    with TestClient(create_app(hub), headers={"authorization": f"Bearer {api_key}"}) as client:
        queued = client.post("/v1/responses", json={"model": "down", "input": "x", "background": True}).json()
        failed = _poll(client, queued["id"], ("failed",))
        assert failed["status"] == "failed" and failed["error"]["message"]


def test_background_errors(app_client: TestClient, hub: Hub) -> None:
    from sovhub.sovereignty.content_store import set_retention

    cases = [
        {"model": "echo", "input": "x", "background": True, "store": False},
    ]
    for body in cases:
        r = app_client.post("/v1/responses", json=body)
        assert r.status_code == 400, (body, r.text)
        assert_valid("ErrorResponse", r.json())
    plain = app_client.post("/v1/responses", json={"model": "echo", "input": "x"}).json()
    r = app_client.post(f"/v1/responses/{plain['id']}/cancel")
    assert r.status_code == 400 and "background" in r.json()["error"]["message"]
    assert app_client.post("/v1/responses/resp_missing/cancel").status_code == 404
    # Not kept, so it could not be read back: refused before anything runs.
    set_retention(hub, "acme", 0)
    r = app_client.post("/v1/responses", json={"model": "echo", "input": "x", "background": True})
    assert r.status_code == 400 and r.json()["error"]["param"] == "background"
    assert _usage(app_client, hub)[-1].completion_tokens == 1  # the plain one only


def test_input_tokens_counts_what_the_response_would_read(app_client: TestClient, hub: Hub) -> None:
    r = app_client.post("/v1/responses/input_tokens", json={"model": "echo", "input": "count these words"})
    assert r.status_code == 200, r.text
    assert_valid("TokenCountsResource", r.json())
    # The fake backend has no tokenizer: the hub's estimate of the same prompt.
    assert r.json() == {"object": "response.input_tokens",
                        "input_tokens": estimate_tokens(prompt_text([{"role": "user", "content": "count these words"}]))}
    longer = app_client.post("/v1/responses/input_tokens", json={
        "model": "echo", "input": "count these words", "instructions": "Answer in verse, always, whatever is asked."})
    assert longer.json()["input_tokens"] > r.json()["input_tokens"]
    first = app_client.post("/v1/responses", json={"model": "echo", "input": "an earlier turn of some length"}).json()
    continued = app_client.post("/v1/responses/input_tokens", json={
        "model": "echo", "input": "count these words", "previous_response_id": first["id"]})
    assert continued.json()["input_tokens"] > r.json()["input_tokens"]
    rows = _usage(app_client, hub)
    counts = [row for row in rows if row.endpoint == "responses.input_tokens"]
    assert len(rows) - len(counts) == 1, "counting runs no model"  # only the real response's row
    assert len(counts) == 3 and all(row.prompt_tokens == row.completion_tokens == 0 for row in counts), \
        "each count is recorded (it was admitted) and bills nothing"
    with hub.db.session() as s:
        assert s.query(StoredResponse).count() == 1, "counting stores nothing"


def test_input_tokens_errors(app_client: TestClient) -> None:
    cases = [
        ({"model": "echo"}, 400),
        ({"model": "echo", "input": "x", "conversation": "conv_1"}, 400),
        ({"model": "echo", "input": "x", "tools": [{"type": "web_search"}]}, 400),
        ({"model": "echo", "input": "x", "previous_response_id": "resp_missing"}, 400),
        ({"model": "echo", "input": "x", "stream": True}, 400),
        ({"model": "nope", "input": "x"}, 404),
    ]
    for body, status in cases:
        r = app_client.post("/v1/responses/input_tokens", json=body)
        assert r.status_code == status, (body, r.text)
        assert_valid("ErrorResponse", r.json())


def test_the_openai_sdk_drives_background_cancel_and_input_tokens(hub: Hub, fake_plugin, api_key: str) -> None:
    import io

    import openai

    with _slow(hub, api_key, delay=0.01) as client:
        sdk = openai.OpenAI(base_url=f"{client.base_url}/v1", api_key=api_key, http_client=client, max_retries=0)
        file_id = sdk.files.create(file=("note.txt", io.BytesIO(b"remember the milk")), purpose="user_data").id
        queued = sdk.responses.create(model="slow", background=True, input=[{"role": "user", "content": [
            {"type": "input_file", "file_id": file_id}, {"type": "input_text", "text": WORDS}]}])
        assert queued.status == "queued" and queued.background is True
        while sdk.responses.retrieve(queued.id).status == "queued":
            time.sleep(0.02)
        cancelled = sdk.responses.cancel(queued.id)
        assert cancelled.status == "cancelled" and cancelled.usage is not None
        counted = sdk.responses.input_tokens.count(model="slow", input="Tell me a joke.")
        assert counted.object == "response.input_tokens" and counted.input_tokens > 0
        with pytest.raises(openai.BadRequestError):
            sdk.responses.cancel(sdk.responses.create(model="slow", input="quick").id)


def test_a_response_cancelled_while_queued_never_runs(hub: Hub, fake_plugin, api_key: str) -> None:
    add_fake_backend(hub, "busy", ["busy"], first_delay=30)
    with TestClient(create_app(hub), headers={"authorization": f"Bearer {api_key}"}) as client:
        queued = client.post("/v1/responses", json={"model": "busy", "input": WORDS, "background": True}).json()
        while fake_plugin.instances.get("busy") is None or fake_plugin.instances["busy"].calls == 0:
            time.sleep(0.01)  # admitted, waiting for the backend's first chunk
        started = time.monotonic()
        cancelled = client.post(f"/v1/responses/{queued['id']}/cancel").json()
        assert time.monotonic() - started < 5
        assert_valid("Response", cancelled)
        assert cancelled["status"] == "cancelled" and cancelled["output"] == []
        assert fake_plugin.instances["busy"].yielded == 0
        assert client.get(f"/v1/responses/{queued['id']}").json()["status"] == "cancelled"
        # Nothing was generated: the admission was given back, no usage row.
        assert _usage(client, hub) == []


def test_runs_a_killed_hub_left_are_failed_when_the_hub_starts_again(hub: Hub, fake_plugin, api_key: str) -> None:
    from sovhub.api.responses.store import StoredState

    principal = authenticate(hub, api_key)
    add_fake_backend(hub, "echo2", ["echo2"])
    left = {"id": "resp_left", "object": "response", "status": "in_progress", "background": True, "model": "echo2",
            "output": [], "created_at": 1, "error": None}
    hub.services.get(ResponseStore).save(principal, StoredState(left, [], []), previous_id=None)
    hub.services.get(ResponseStore).save(principal, StoredState({**left, "id": "resp_done", "status": "completed"},
                                                                [], []), previous_id=None)
    with TestClient(create_app(hub), headers={"authorization": f"Bearer {api_key}"}) as client:
        failed = client.get("/v1/responses/resp_left").json()
        assert failed["status"] == "failed" and "create it again" in failed["error"]["message"]
        assert client.get("/v1/responses/resp_done").json()["status"] == "completed"
