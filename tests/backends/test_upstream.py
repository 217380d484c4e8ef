"""The upstream (OpenAI-compatible) backend against a real loopback HTTP server."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from sovhub.app import create_app
from sovhub.backends.catalog import add_backend
from sovhub.hub import Hub
from tests.upstream_server import FakeUpstream

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
def upstream() -> FakeUpstream:
    with FakeUpstream(["up-model"]) as up:
        yield up


def _client(hub: Hub, api_key: str) -> TestClient:
    return TestClient(create_app(hub), headers={"authorization": f"Bearer {api_key}"})


def test_stream_passes_through_and_usage_is_metered(hub: Hub, api_key: str, upstream: FakeUpstream) -> None:
    add_backend(hub, "up", url=upstream.url, models=["up-model"])
    with _client(hub, api_key) as client:
        r = client.post("/v1/chat/completions", json={"model": "up-model", "messages": MSG, "stream": True})
        assert r.status_code == 200
        events = [json.loads(x[6:]) for x in r.text.splitlines() if x.startswith("data: {")]
        text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
        assert text == "w0 w1 w2 w3 w4 "
        assert all(e["id"].startswith("chatcmpl-") for e in events)
        r2 = client.post("/v1/chat/completions", json={"model": "up-model", "messages": MSG, "temperature": 0.2,
                                                        "logit_bias": {"1": 1}})
        assert r2.json()["usage"]["completion_tokens"] == 5
    streamed, sent = (r["body"] for r in upstream.requests[-2:])
    assert streamed["stream"] is True and streamed["stream_options"] == {"include_usage": True}
    # A non-streaming request goes upstream as one: one JSON body to relay, not a chunk per token.
    assert sent["stream"] is False and "stream_options" not in sent
    message = r2.json()["choices"][0]["message"]
    assert (message["role"], message["content"]) == ("assistant", "w0 w1 w2 w3 w4 ")
    assert sent["temperature"] == 0.2 and sent["logit_bias"] == {"1": 1}
    assert not any(k.startswith("_") for k in sent)
    from sqlalchemy import select

    from sovhub.store.tables import UsageRecord

    with hub.db.session() as s:
        rows = list(s.scalars(select(UsageRecord)))
    assert len(rows) == 2 and rows[1].completion_tokens == 5 and rows[1].backend == "up"


def test_models_discovered_from_upstream(hub: Hub, api_key: str, upstream: FakeUpstream) -> None:
    add_backend(hub, "up", url=upstream.url)
    with _client(hub, api_key) as client:
        assert "up-model" in [m["id"] for m in client.get("/v1/models").json()["data"]]


def test_n_is_honoured_by_upstreams(hub: Hub, api_key: str, upstream: FakeUpstream) -> None:
    add_backend(hub, "up", url=upstream.url, models=["up-model"])
    with _client(hub, api_key) as client:
        r = client.post("/v1/chat/completions", json={"model": "up-model", "messages": MSG, "n": 2})
        assert [c["index"] for c in r.json()["choices"]] == [0, 1]


def test_an_upstream_that_streams_when_asked_not_to_is_read_as_a_stream(hub: Hub, api_key: str) -> None:
    with FakeUpstream(["up-model"], always_stream=True) as up:
        add_backend(hub, "up", url=up.url, models=["up-model"])
        with _client(hub, api_key) as client:
            r = client.post("/v1/chat/completions", json={"model": "up-model", "messages": MSG})
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "w0 w1 w2 w3 w4 "


def test_malformed_completion_is_a_502(hub: Hub, api_key: str) -> None:
    with FakeUpstream(["up-model"], malformed=True) as up:
        add_backend(hub, "up", url=up.url, models=["up-model"])
        with _client(hub, api_key) as client:
            r = client.post("/v1/chat/completions", json={"model": "up-model", "messages": MSG})
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "upstream_error"
    assert "malformed completion" in r.json()["error"]["message"]


@pytest.mark.parametrize(("status", "expected", "code"), [
    (500, 503, "backend_unavailable"), (400, 400, None), (429, 429, "rate_limit_exceeded"), (401, 502, "upstream_error")])
def test_upstream_errors_are_mapped(hub: Hub, api_key: str, status: int, expected: int, code: str | None) -> None:
    with FakeUpstream(["up-model"], status=status) as up:
        add_backend(hub, "up", url=up.url, models=["up-model"])
        with _client(hub, api_key) as client:
            r = client.post("/v1/chat/completions", json={"model": "up-model", "messages": MSG})
    assert r.status_code == expected
    assert f"upstream says {status}" in r.json()["error"]["message"]
    if code:
        assert r.json()["error"]["code"] == code


def test_unreachable_upstream_is_503_and_retry_uses_next(hub: Hub, api_key: str, upstream: FakeUpstream) -> None:
    hub.settings.backend_probe_interval_s = 0  # the pool's health checks would open connections of their own
    add_backend(hub, "dead", url="http://127.0.0.1:9/v1", models=["up-model"])
    with _client(hub, api_key) as client:
        r = client.post("/v1/chat/completions", json={"model": "up-model", "messages": MSG})
        assert r.status_code == 503
        add_backend(hub, "alive", url=upstream.url, models=["up-model"])
    with _client(hub, api_key) as client:
        r = client.post("/v1/chat/completions", json={"model": "up-model", "messages": MSG})
        assert r.status_code == 200 and upstream.connections == 1


@pytest.mark.parametrize("stream", [True, False])
def test_read_timeout_before_the_first_byte_is_a_clean_503(hub: Hub, api_key: str, stream: bool) -> None:
    hub.settings.upstream_read_timeout = 0.2  # a non-streamed answer's whole wait
    hub.settings.upstream_first_byte_timeout = 0.2  # a streamed one's, to its first chunk
    with FakeUpstream(["slow"], delay=0.5, words=3) as up:
        add_backend(hub, "slow", url=up.url, models=["slow"])
        with _client(hub, api_key) as client:
            r = client.post("/v1/chat/completions", json={"model": "slow", "messages": MSG, "stream": stream})
    # No byte had reached the client when the timeout hit, so it is a clean error response.
    assert r.status_code == 503 and "timed out" in r.json()["error"]["message"]


def test_structured_output_tools_and_logprobs_reach_an_upstream_unchanged(
    hub: Hub, api_key: str, upstream: FakeUpstream
) -> None:
    """The hub checks their shape and passes them on as sent: the upstream's own engine enforces them."""
    schema = {"type": "object", "properties": {"a": {"type": "number", "multipleOf": 0.5}}, "required": ["a"]}
    extras = {
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": schema}},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": True}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}}, "parallel_tool_calls": False,
        "logprobs": True, "top_logprobs": 3, "n": 2, "seed": 5,
    }
    add_backend(hub, "up", url=upstream.url, models=["up-model"])
    with _client(hub, api_key) as client:
        r = client.post("/v1/chat/completions", json={"model": "up-model", "messages": MSG, **extras})
        assert r.status_code == 200, r.text
        # A keyword the embedded model's grammar could not enforce (multipleOf) is the upstream's to judge.
        bad = client.post("/v1/chat/completions", json={"model": "up-model", "messages": MSG,
                                                         "tools": [{"type": "function", "function": {"name": "a b"}}]})
        assert bad.status_code == 400
    sent = upstream.requests[-1]["body"]
    assert {k: sent[k] for k in extras} == extras
    responses_body = {"model": "up-model", "input": "hi", "text": {"format": {"type": "json_schema", "name": "x",
                                                                            "schema": schema, "strict": True}}}
    with _client(hub, api_key) as client:
        assert client.post("/v1/responses", json=responses_body).status_code == 200
    assert upstream.requests[-1]["body"]["response_format"] == extras["response_format"]
