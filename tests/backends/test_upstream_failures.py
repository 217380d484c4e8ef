"""Upstreams that hang or die, against real loopback servers: bounded waits, Retry-After on 503s, and streams
cut mid-way that end in-band, are metered, logged and counted."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sovhub.app import create_app
from sovhub.backends.catalog import add_backend
from sovhub.hub import Hub
from sovhub.store.tables import UsageRecord

MSG = [{"role": "user", "content": "hi"}]


class BrokenUpstream:
    """`silent`: reads the request and never answers; `stall`: two chunks, then nothing; `die`: two chunks,
    then the connection is closed."""

    def __init__(self, mode: str) -> None:
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("content-length", 0)))
                if mode == "silent":
                    owner.release.wait(30)
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                for word in ("one ", "two "):
                    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
                             "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
                    self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                    self.wfile.flush()
                if mode == "stall":
                    owner.release.wait(30)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def broken(request: pytest.FixtureRequest) -> Iterator[BrokenUpstream]:
    up = BrokenUpstream(request.param)
    yield up
    up.close()


def _events(text: str) -> list[Any]:
    out: list[Any] = []
    for line in text.splitlines():
        if line.startswith("data: "):
            out.append(line[6:] if line[6:] == "[DONE]" else json.loads(line[6:]))
    return out


def _backend_errors(client: TestClient, hub: Hub, backend: str) -> float:
    text = client.get("/metrics", headers={"authorization": f"Bearer {hub.settings.resolved_metrics_token}"}).text
    for line in text.splitlines():
        if line.startswith(f'sovhub_backend_errors_total{{backend="{backend}"}}'):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize("broken", ["silent"], indirect=True)
@pytest.mark.parametrize("stream", [True, False])
def test_a_hung_upstream_is_a_prompt_503_with_retry_after(hub: Hub, api_key: str, broken: BrokenUpstream,
                                                          stream: bool) -> None:
    hub.settings.upstream_first_byte_timeout = 0.5
    hub.settings.upstream_read_timeout = 0.5
    add_backend(hub, "hung", url=broken.url, models=["m"])
    with TestClient(create_app(hub), headers={"authorization": f"Bearer {api_key}"}) as client:
        started = time.perf_counter()
        r = client.post("/v1/chat/completions", json={"model": "m", "messages": MSG, "stream": stream})
        waited = time.perf_counter() - started
        errors = _backend_errors(client, hub, "hung")
    assert r.status_code == 503 and r.json()["error"]["code"] == "backend_unavailable"
    assert "timed out" in r.json()["error"]["message"]
    assert 0.4 < waited < 3, waited  # the timeout, not the old 300 s
    # The backend is cooling down now: the client is told when it is worth trying again.
    assert r.headers["retry-after"] == str(int(hub.settings.backend_cooldown_s))
    assert errors == 1


def test_a_503_when_no_backend_may_serve_still_carries_retry_after(hub: Hub, api_key: str) -> None:
    add_backend(hub, "closed", url="http://127.0.0.1:9/v1", models=["m"])
    with TestClient(create_app(hub), headers={"authorization": f"Bearer {api_key}"}) as client:
        r = client.post("/v1/chat/completions", json={"model": "m", "messages": MSG})
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1


@pytest.mark.parametrize("broken", ["stall", "die"], indirect=True)
def test_a_stream_cut_by_its_upstream_ends_in_band_and_is_metered_logged_and_counted(
    hub: Hub, api_key: str, broken: BrokenUpstream, caplog: pytest.LogCaptureFixture,
) -> None:
    hub.settings.upstream_chunk_timeout = 0.5
    add_backend(hub, "flaky", url=broken.url, models=["m"])
    with caplog.at_level(logging.WARNING, logger="sovhub.api.chat"):
        with TestClient(create_app(hub), headers={"authorization": f"Bearer {api_key}"}) as client:
            started = time.perf_counter()
            r = client.post("/v1/chat/completions", json={"model": "m", "messages": MSG, "stream": True})
            waited = time.perf_counter() - started
            errors = _backend_errors(client, hub, "flaky")
    events = _events(r.text)
    assert r.status_code == 200  # the headers had gone when the upstream failed
    assert "".join(c["delta"].get("content", "") for e in events[:-2] for c in e.get("choices", [])) == "one two "
    assert events[-2]["error"]["code"] == "upstream_error" and events[-1] == "[DONE]"
    assert waited < 3, waited
    assert errors == 1
    assert any("failed mid-answer" in rec.getMessage() and rec.levelno == logging.WARNING for rec in caplog.records)
    with hub.db.session() as s:
        rows = s.execute(select(UsageRecord.status, UsageRecord.completion_tokens, UsageRecord.backend)).all()
    assert [(status, backend) for status, _, backend in rows] == [(502, "flaky")]
    assert rows[0][1] > 0  # what was streamed before the cut is counted
