"""/v1/responses over the chat service, with the fake backend: shapes, events, storage, isolation."""

from __future__ import annotations

import json
from datetime import timedelta

from fastapi.testclient import TestClient

from sovhub.accounts import create_key, create_org
from sovhub.api.responses.store import ResponseStore
from sovhub.api.responses.tables import StoredResponse
from sovhub.hub import Hub
from sovhub.store.base import as_utc, utcnow
from tests.contract.schemas import assert_valid


def _events(text: str) -> list[dict]:
    """SSE `event:`/`data:` pairs; each event's name must equal its data's type."""
    out = []
    name = None
    for line in text.splitlines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
            assert data["type"] == name
            out.append(data)
    return out


def _create(client: TestClient, **body) -> dict:
    r = client.post("/v1/responses", json={"model": "echo", **body})
    assert r.status_code == 200, r.text
    assert_valid("Response", r.json())
    return r.json()


def test_string_input_gives_a_completed_response_with_usage(app_client: TestClient) -> None:
    out = _create(app_client, input="hello big world", metadata={"ticket": "42"}, temperature=0.5, top_p=0.9)
    assert out["object"] == "response" and out["status"] == "completed" and out["id"].startswith("resp_")
    [message] = out["output"]
    assert message["type"] == "message" and message["role"] == "assistant" and message["status"] == "completed"
    assert message["content"][0]["text"] == "hello big world"
    assert out["usage"]["input_tokens"] == 3 and out["usage"]["output_tokens"] == 3
    assert out["usage"]["total_tokens"] == 6
    assert out["metadata"] == {"ticket": "42"} and out["temperature"] == 0.5 and out["top_p"] == 0.9


def test_item_input_and_instructions_reach_the_backend(app_client: TestClient, fake_plugin) -> None:
    _create(app_client, instructions="Be brief.", input=[
        {"role": "user", "content": "first question"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "first answer"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "second question"}]},
    ])
    seen = fake_plugin.instances["fake1"].received[-1]
    assert [m["role"] for m in seen] == ["system", "user", "assistant", "user"]
    assert seen[0]["content"] == "Be brief." and seen[-1]["content"] == "second question"


def test_max_output_tokens_makes_an_incomplete_response(app_client: TestClient) -> None:
    out = _create(app_client, input="one two three four five", max_output_tokens=2)
    assert out["status"] == "incomplete" and out["incomplete_details"] == {"reason": "max_output_tokens"}
    assert out["output"][0]["content"][0]["text"] == "one two"


def test_previous_response_id_continues_the_stored_conversation(app_client: TestClient, fake_plugin) -> None:
    first = _create(app_client, input="remember the apples", instructions="first instructions")
    second = _create(app_client, input="and the pears", previous_response_id=first["id"])
    seen = fake_plugin.instances["fake1"].received[-1]
    # The earlier turns, not the earlier instructions (as OpenAI: they are not carried over).
    assert [(m["role"], m["content"]) for m in seen] == [
        ("user", "remember the apples"), ("assistant", "remember the apples"), ("user", "and the pears")]
    assert second["previous_response_id"] == first["id"]


def test_retrieve_input_items_and_delete(app_client: TestClient) -> None:
    out = _create(app_client, input=[{"role": "user", "content": "a b"}, {"role": "user", "content": "c d"}])
    got = app_client.get(f"/v1/responses/{out['id']}")
    assert got.status_code == 200 and got.json() == out
    items = app_client.get(f"/v1/responses/{out['id']}/input_items").json()
    assert_valid("ResponseItemList", items)
    assert [i["content"][0]["text"] for i in items["data"]] == ["c d", "a b"]  # newest first by default
    page = app_client.get(f"/v1/responses/{out['id']}/input_items", params={"order": "asc", "limit": 1}).json()
    assert page["has_more"] is True and page["data"][0]["content"][0]["text"] == "a b"
    rest = app_client.get(f"/v1/responses/{out['id']}/input_items",
                          params={"order": "asc", "after": page["last_id"]}).json()
    assert [i["content"][0]["text"] for i in rest["data"]] == ["c d"] and rest["has_more"] is False
    deleted = app_client.delete(f"/v1/responses/{out['id']}")
    assert deleted.json() == {"id": out["id"], "object": "response", "deleted": True}
    assert app_client.get(f"/v1/responses/{out['id']}").status_code == 404
    assert app_client.delete(f"/v1/responses/{out['id']}").status_code == 404


def test_store_false_keeps_nothing(app_client: TestClient, hub: Hub) -> None:
    out = _create(app_client, input="secret plans", store=False)
    assert out["store"] is False
    assert app_client.get(f"/v1/responses/{out['id']}").status_code == 404
    r = app_client.post("/v1/responses", json={"model": "echo", "input": "more", "previous_response_id": out["id"]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "previous_response_not_found"
    with hub.db.session() as s:
        assert s.query(StoredResponse).count() == 0


def test_stored_content_is_sealed(app_client: TestClient, hub: Hub) -> None:
    out = _create(app_client, input="the password is swordfish")
    with hub.db.session() as s:
        row = s.get(StoredResponse, out["id"])
        assert row is not None and b"swordfish" not in row.content
        assert as_utc(row.expires_at) > utcnow() + timedelta(days=29)


def test_another_organization_cannot_read_continue_or_delete(app_client: TestClient, hub: Hub) -> None:
    out = _create(app_client, input="acme internal")
    create_org(hub, "rival")
    rival = {"authorization": f"Bearer {create_key(hub, 'rival').secret}"}
    assert app_client.get(f"/v1/responses/{out['id']}", headers=rival).status_code == 404
    assert app_client.get(f"/v1/responses/{out['id']}/input_items", headers=rival).status_code == 404
    assert app_client.delete(f"/v1/responses/{out['id']}", headers=rival).status_code == 404
    r = app_client.post("/v1/responses", headers=rival,
                        json={"model": "echo", "input": "x", "previous_response_id": out["id"]})
    assert r.status_code == 400
    assert app_client.get(f"/v1/responses/{out['id']}").status_code == 200  # still the owner's


def test_expired_responses_are_not_read_and_are_purged(app_client: TestClient, hub: Hub) -> None:
    out = _create(app_client, input="old news")
    with hub.db.session() as s:
        s.get(StoredResponse, out["id"]).expires_at = utcnow() - timedelta(seconds=1)
    assert app_client.get(f"/v1/responses/{out['id']}").status_code == 404
    assert hub.services.get(ResponseStore).purge_expired() == 1


def test_zero_retention_stores_nothing(app_client: TestClient, hub: Hub) -> None:
    from sovhub.sovereignty.content_store import set_retention

    set_retention(hub, "acme", 0)
    out = _create(app_client, input="forget me")
    assert app_client.get(f"/v1/responses/{out['id']}").status_code == 404


def test_stream_events_come_in_the_documented_order(app_client: TestClient) -> None:
    r = app_client.post("/v1/responses", json={"model": "echo", "input": "hello big world", "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = _events(r.text)
    kinds = [e["type"] for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "hello big world"
    assert events[0]["response"]["status"] == "in_progress" and events[-1]["response"]["status"] == "completed"
    for event in events:
        assert_valid("ResponseStreamEvent", event)
    assert app_client.get(f"/v1/responses/{events[-1]['response']['id']}").json() == events[-1]["response"]


def test_a_backend_failing_mid_stream_ends_with_error_and_response_failed(hub: Hub, fake_plugin, api_key) -> None:
    from sovhub.app import create_app
    from tests.conftest import add_fake_backend

    add_fake_backend(hub, "flaky", ["flaky"], fail_after=2)
    with TestClient(create_app(hub), headers={"authorization": f"Bearer {api_key}"}) as client:
        r = client.post("/v1/responses", json={"model": "flaky", "input": "a b c d e", "stream": True})
        events = _events(r.text)
        assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
        failed = events[-1]["response"]
        assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
        for event in events:
            assert_valid("ResponseStreamEvent", event)
        plain = client.post("/v1/responses", json={"model": "flaky", "input": "a b c d e"})
        assert plain.status_code == 502 and plain.json()["error"]["message"]


def test_bad_requests_are_openai_shaped_400s(app_client: TestClient) -> None:
    cases = [
        {"model": "echo", "input": []},
        {"model": "echo", "input": "x", "tools": [{"type": "web_search"}]},
        {"model": "echo", "input": "x", "tool_choice": "required"},
        {"model": "echo", "input": [{"type": "item_reference", "id": "msg_1"}]},
        {"model": "echo", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
        {"model": "echo", "input": "x", "metadata": {f"k{i}": "v" for i in range(17)}},
        {"model": "echo", "input": "x", "text": {"format": {"type": "json_schema"}}},
        {"model": "echo", "input": "x", "no_such_field": 1},
        # `include` is a list of names (schemathesis sent `true`: a 500 before it was typed)
        {"model": "echo", "input": "x", "include": True},
        {"model": "echo", "input": "x", "include": "message.output_text.logprobs"},
        # The fake backend passes nothing on: tools are refused, not silently dropped.
        {"model": "echo", "input": "x", "tools": [{"type": "function", "name": "f", "parameters": {}}]},
    ]
    for body in cases:
        r = app_client.post("/v1/responses", json=body)
        assert r.status_code == 400, (body, r.text)
        assert_valid("ErrorResponse", r.json())
    assert app_client.post("/v1/responses", json={"model": "nope", "input": "x"}).status_code == 404
    assert app_client.get("/v1/responses/resp_missing").status_code == 404
    listed = app_client.post("/v1/responses", json={"model": "echo", "input": "x",
                                                    "include": ["reasoning.encrypted_content"]})
    assert listed.status_code == 200, listed.text


def test_a_key_is_needed(app_client: TestClient) -> None:
    r = app_client.post("/v1/responses", json={"model": "echo", "input": "x"}, headers={"authorization": ""})
    assert r.status_code == 401


def test_responses_are_metered_and_rate_limited(app_client: TestClient, hub: Hub) -> None:
    """The chat service's admission and metering apply to /v1/responses unchanged."""
    from sqlalchemy import select

    from sovhub.access.quotas import set_org_limits
    from sovhub.metering import Meter
    from sovhub.store.tables import Organization, UsageRecord

    _create(app_client, input="count me")
    app_client.portal.call(hub.services.get(Meter).flush)
    with hub.db.session() as s:
        [row] = list(s.scalars(select(UsageRecord)))
        org_id = s.execute(select(Organization.id).where(Organization.name == "acme")).scalar_one()
    assert (row.model, row.prompt_tokens, row.completion_tokens, row.status) == ("echo", 2, 2, 200)
    set_org_limits(hub, org_id, {"rpm": 1})
    assert app_client.post("/v1/responses", json={"model": "echo", "input": "again"}).status_code == 200
    r = app_client.post("/v1/responses", json={"model": "echo", "input": "and again"})
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"


def test_residency_refuses_a_backend_abroad(data_dir) -> None:
    from sovhub.app import create_app
    from sovhub.backends.catalog import add_backend
    from sovhub.hub import build_hub
    from tests.conftest import make_settings
    from tests.upstream_server import FakeUpstream

    hub = build_hub(make_settings(data_dir, safety={"enabled": False}, sovereignty={"jurisdiction": "UA"}))
    try:
        create_org(hub, "acme")
        secret = create_key(hub, "acme").secret
        with FakeUpstream(["abroad-model"]) as up:
            add_backend(hub, "abroad", url=up.url, models=["abroad-model"], jurisdiction="US",
                        operator="Foreign Cloud Inc.")
            with TestClient(create_app(hub), headers={"authorization": f"Bearer {secret}"}) as client:
                for stream in (False, True):
                    r = client.post("/v1/responses", json={"model": "abroad-model", "input": "secret", "stream": stream})
                    assert r.status_code == 403 and r.json()["error"]["code"] == "residency_violation"
            assert up.requests == []
    finally:
        hub.close()
