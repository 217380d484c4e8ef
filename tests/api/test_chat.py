from __future__ import annotations

import json

from fastapi.testclient import TestClient

from sovhub.hub import Hub


def _sse(resp_text: str) -> list[dict]:
    events = []
    for line in resp_text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line[6:]))
    return events


def test_non_stream_answer_has_usage_and_headers(app_client: TestClient) -> None:
    r = app_client.post("/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": "hello big world"}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "hello big world"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert r.headers["x-request-id"]
    assert "x-sovhub-overhead-ms" in r.headers


def test_overhead_header_leaves_out_the_backend_time(hub: Hub, fake_plugin, api_key: str) -> None:
    """The backend spends 0.3 s producing six words; the hub's own share must not include it."""
    import time

    from sovhub.app import create_app
    from tests.conftest import add_fake_backend

    add_fake_backend(hub, "slow1", ["slow"], delay=0.05)
    with TestClient(create_app(hub), headers={"authorization": f"Bearer {api_key}"}) as client:
        started = time.perf_counter()
        r = client.post("/v1/chat/completions",
                        json={"model": "slow", "messages": [{"role": "user", "content": "a b c d e f"}]})
        wall_ms = (time.perf_counter() - started) * 1000
    assert r.status_code == 200, r.text
    overhead = float(r.headers["x-sovhub-overhead-ms"])
    assert wall_ms >= 300
    assert 0 < overhead < wall_ms - 250, (overhead, wall_ms)


def test_stream_with_usage(app_client: TestClient) -> None:
    r = app_client.post(
        "/v1/chat/completions",
        json={"model": "echo", "stream": True, "stream_options": {"include_usage": True},
              "messages": [{"role": "user", "content": "a b c"}]},
    )
    assert r.status_code == 200
    assert r.text.rstrip().endswith("data: [DONE]")
    events = _sse(r.text)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in events if c["choices"]) == "a b c"
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 3
    assert len({e["id"] for e in events}) == 1


def test_stream_without_usage_sends_no_usage_chunk(app_client: TestClient) -> None:
    r = app_client.post("/v1/chat/completions", json={"model": "echo", "stream": True,
                                                      "messages": [{"role": "user", "content": "x"}]})
    assert all("usage" not in e for e in _sse(r.text))


def test_max_tokens_limits_answer(app_client: TestClient) -> None:
    r = app_client.post("/v1/chat/completions", json={"model": "echo", "max_completion_tokens": 2,
                                                      "messages": [{"role": "user", "content": "one two three"}]})
    assert r.json()["choices"][0]["message"]["content"] == "one two"
    assert r.json()["choices"][0]["finish_reason"] == "length"
