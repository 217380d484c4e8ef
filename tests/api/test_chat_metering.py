"""Every chat request that reached a backend is recorded once, with its tokens, however it ends.

Real server (uvicorn on loopback) and real sockets: a client that hangs up is a closed TCP
connection, not a simulated one.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select

from sovhub.api.chat.service import prompt_text
from sovhub.app import create_app
from sovhub.backends.base import estimate_tokens
from sovhub.backends.catalog import add_backend
from sovhub.hub import Hub
from sovhub.store.tables import UsageRecord
from tests.conftest import add_fake_backend
from tests.safety.pipeline_fixtures import MarkerPlugin, marker_fixture, pipeline_settings  # noqa: F401 - fixtures
from tests.server import ThreadedServer
from tests.upstream_server import FakeUpstream

MSG = [{"role": "user", "content": "tell me"}]


def _rows(hub: Hub, want: int, timeout: float = 5.0) -> list[UsageRecord]:
    """The usage rows once `want` of them are written (the meter writes in batches), or what is there."""
    deadline = time.monotonic() + timeout
    while True:
        with hub.db.session() as s:
            rows = list(s.scalars(select(UsageRecord).order_by(UsageRecord.id)))
        if len(rows) >= want or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def _events(raw: bytes) -> list[dict[str, Any]]:
    lines = raw.decode().splitlines()
    return [json.loads(x[6:]) for x in lines if x.startswith("data: {")]


def _post(server: ThreadedServer, api_key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", headers={"authorization": f"Bearer {api_key}"},
                      json=body, timeout=30)


def test_abandoned_streams_are_billed_for_what_was_generated(hub: Hub, fake_plugin: Any, api_key: str) -> None:
    add_fake_backend(hub, "slow", ["slow"], delay=0.01)
    words = " ".join(f"w{i}" for i in range(400))
    with ThreadedServer(create_app(hub)) as server:
        received: list[str] = []
        for _ in range(3):
            text = ""
            with httpx.stream(
                "POST", f"{server.url}/v1/chat/completions", headers={"authorization": f"Bearer {api_key}"},
                json={"model": "slow", "stream": True, "messages": [{"role": "user", "content": words}]},
                timeout=30,
            ) as r:
                got = 0
                for line in r.iter_lines():
                    if line.startswith("data: {"):
                        got += 1
                        text += "".join(c["delta"].get("content", "") for c in json.loads(line[6:])["choices"])
                    if got >= 5:
                        break
            received.append(text)
        rows = _rows(hub, 3)
        time.sleep(0.3)
        again = _rows(hub, 4, timeout=0)
    assert len(rows) == 3, f"{len(rows)} of 3 abandoned streams recorded"
    assert len(again) == 3, "a request was recorded twice"
    assert all(text for text in received)
    for row, text in zip(rows, received, strict=True):
        # The hub counted (the stream ended before the backend's usage): at least what the client read.
        assert row.status == 499 and row.estimated
        assert row.completion_tokens >= estimate_tokens(text) > 0
        assert row.prompt_tokens == estimate_tokens(prompt_text([{"role": "user", "content": words}]))
    assert fake_plugin.instances["slow"].yielded < 3 * 150, "generation went on after the clients left"


def test_a_backend_dying_after_partial_output_is_billed(
    hub: Hub, fake_plugin: Any, api_key: str, marker: MarkerPlugin
) -> None:
    add_fake_backend(hub, "flaky", ["flaky"], fail_after=30)
    words = " ".join(f"w{i}" for i in range(100))
    with ThreadedServer(create_app(hub)) as server:
        r = _post(server, api_key, {"model": "flaky", "stream": True, "messages": [{"role": "user", "content": words}]})
        events = _events(r.content)
        plain = _post(server, api_key, {"model": "flaky", "messages": [{"role": "user", "content": words}]})
        rows = _rows(hub, 2)
    assert r.status_code == 200 and events[-1]["error"]["code"] == "upstream_error"
    # What the backend sent before it died passed its final check and reached the client.
    assert "".join(c["delta"].get("content", "") for e in events[:-1] for c in e["choices"]) == " ".join(
        f"w{i}" for i in range(30)) + " "
    assert plain.status_code == 502 and plain.json()["error"]["code"] == "upstream_error"
    assert [(row.status, row.estimated) for row in rows] == [(502, True), (502, True)]
    assert all(row.completion_tokens == estimate_tokens("".join(f"w{i} " for i in range(30))) for row in rows)


def test_an_answer_stopped_by_the_output_check_is_billed(hub: Hub, api_key: str, marker: MarkerPlugin) -> None:
    text = "fine " * 10 + "KABOOM " + "after " * 60
    with FakeUpstream(["up-model"], texts=[text]) as up:
        add_backend(hub, "up", url=up.url, models=["up-model"])
        with ThreadedServer(create_app(hub)) as server:
            streamed = _post(server, api_key, {"model": "up-model", "messages": MSG, "stream": True})
            plain = _post(server, api_key, {"model": "up-model", "messages": MSG})
            rows = _rows(hub, 2)
    assert streamed.status_code == 200 and _events(streamed.content)[-1]["choices"][0]["finish_reason"] == (
        "content_filter")
    assert b"KABOOM" not in streamed.content and b"KABOOM" not in plain.content
    assert plain.status_code == 200, plain.text
    assert plain.json()["choices"][0]["finish_reason"] == "content_filter"
    stream_row, plain_row = rows
    # Streamed: the hub stopped reading before the upstream's usage, so it counted what came.
    assert stream_row.estimated and stream_row.completion_tokens > 0 and stream_row.status == 200
    # Not streamed: the whole answer came with its usage, billed although the client got none of it.
    assert (plain_row.estimated, plain_row.completion_tokens) == (False, 71)
    assert plain.json()["usage"]["completion_tokens"] == 71


def test_an_upstream_without_usage_is_counted_and_marked_estimated(hub: Hub, api_key: str) -> None:
    with FakeUpstream(["up-model"], usage=False) as up, FakeUpstream(["exact"]) as exact:
        add_backend(hub, "up", url=up.url, models=["up-model"])
        add_backend(hub, "exact", url=exact.url, models=["exact"])
        with TestClient(create_app(hub), headers={"authorization": f"Bearer {api_key}"}) as client:
            streamed = client.post("/v1/chat/completions", json={
                "model": "up-model", "messages": MSG, "stream": True, "stream_options": {"include_usage": True}})
            plain = client.post("/v1/chat/completions", json={"model": "up-model", "messages": MSG})
            reported = client.post("/v1/chat/completions", json={"model": "exact", "messages": MSG})
        rows = _rows(hub, 3)
    counted = {"prompt_tokens": estimate_tokens(prompt_text(MSG)), "completion_tokens": estimate_tokens("w0 w1 w2 w3 w4 ")}
    counted["total_tokens"] = counted["prompt_tokens"] + counted["completion_tokens"]
    # The client is told what it is billed.
    assert _events(streamed.content)[-1]["usage"] == counted
    assert plain.json()["usage"] == counted
    assert [(r.estimated, r.prompt_tokens, r.completion_tokens) for r in rows[:2]] == [
        (True, counted["prompt_tokens"], counted["completion_tokens"])] * 2
    assert (rows[2].estimated, rows[2].completion_tokens) == (False, 5)
    assert reported.json()["usage"]["completion_tokens"] == 5


def test_a_stream_whose_client_left_before_it_was_read_is_billed(hub: Hub, fake_plugin: Any, api_key: str) -> None:
    """The client is gone before the response starts: the body is never iterated, yet recorded."""
    add_fake_backend(hub, "fake1", ["echo"])
    body = json.dumps({"model": "echo", "stream": True, "messages": [{"role": "user", "content": "a b c"}]}).encode()
    sent: list[dict[str, Any]] = []

    async def drive(app: Any) -> None:
        incoming = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return incoming.pop(0) if incoming else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if message["type"] == "http.response.start":
                await asyncio.sleep(5)  # the disconnect is noticed meanwhile

        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
                 "query_string": b"", "root_path": "", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 5000),
                 "headers": [(b"authorization", f"Bearer {api_key}".encode()), (b"content-type", b"application/json"),
                             (b"content-length", str(len(body)).encode())]}
        await app(scope, receive, send)

    app = create_app(hub)
    with TestClient(app) as client:
        started = time.monotonic()
        assert client.portal is not None
        client.portal.call(drive, app)
        assert time.monotonic() - started < 4, "the response waited for a client that had left"
        rows = _rows(hub, 1)
    assert [m["type"] for m in sent] == ["http.response.start"], "no body should have been sent"
    assert len(rows) == 1 and rows[0].status == 499
    # The first chunk (the role) was read before the response began; nothing else was generated.
    assert rows[0].completion_tokens == 0 and rows[0].prompt_tokens > 0
