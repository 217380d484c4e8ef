"""A Responses client that hangs up is billed once and its response stored as cancelled (real
server, real socket: a closed TCP connection, as in tests/api/test_chat_metering.py)."""

from __future__ import annotations

import json
import time

import httpx
from sqlalchemy import select

from sovhub.app import create_app
from sovhub.backends.base import estimate_tokens
from sovhub.hub import Hub
from sovhub.store.tables import UsageRecord
from tests.conftest import add_fake_backend
from tests.contract.schemas import assert_valid
from tests.server import ThreadedServer

WORDS = " ".join(f"w{i}" for i in range(400))


def _rows(hub: Hub, want: int, timeout: float = 5.0) -> list[UsageRecord]:
    deadline = time.monotonic() + timeout
    while True:
        with hub.db.session() as s:
            rows = list(s.scalars(select(UsageRecord).order_by(UsageRecord.id)))
        if len(rows) >= want or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def _hang_up(server: ThreadedServer, api_key: str, after: int, **body: object) -> tuple[str, str]:
    """Read `after` text deltas of a streamed response, then close the connection: (its id, the text read)."""
    response_id, text, deltas = "", "", 0
    with httpx.stream("POST", f"{server.url}/v1/responses", headers={"authorization": f"Bearer {api_key}"},
                      json={"model": "slow", "input": WORDS, "stream": True, **body}, timeout=30) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if event["type"] == "response.created":
                response_id = event["response"]["id"]
            if event["type"] == "response.output_text.delta":
                text += event["delta"]
                deltas += 1
                if deltas >= after:
                    break
    return response_id, text


def _stored(server: ThreadedServer, api_key: str, response_id: str, timeout: float = 5.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        got = httpx.get(f"{server.url}/v1/responses/{response_id}", headers={"authorization": f"Bearer {api_key}"})
        if got.status_code == 200 or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def test_a_client_that_hangs_up_is_billed_once_and_its_response_is_stored_cancelled(
    hub: Hub, fake_plugin, api_key: str
) -> None:
    add_fake_backend(hub, "slow", ["slow"], delay=0.01)
    with ThreadedServer(create_app(hub)) as server:
        response_id, text = _hang_up(server, api_key, after=5)
        rows = _rows(hub, 1)
        got = _stored(server, api_key, response_id)
        time.sleep(0.3)
        again = _rows(hub, 2, timeout=0)
    assert len(rows) == 1 and len(again) == 1, "an abandoned response must leave exactly one usage row"
    row = rows[0]
    # The hub counted (the stream ended before the backend's usage): at least what the client read.
    assert row.status == 499 and row.completion_tokens >= estimate_tokens(text) > 0
    assert got.status_code == 200, got.text
    response = got.json()
    assert_valid("Response", response)
    assert response["status"] == "cancelled" and response["completed_at"] is None
    [message] = response["output"]
    assert message["status"] == "incomplete"
    # What was generated before the hang-up, at least what the client read, and not the whole answer.
    kept = message["content"][0]["text"]
    assert kept.startswith(text) and len(kept.split()) < 400
    assert response["usage"]["output_tokens"] == row.completion_tokens
    assert response["usage"]["input_tokens"] == row.prompt_tokens
    assert fake_plugin.instances["slow"].yielded < 200, "generation went on after the client left"


def test_store_false_hang_up_is_billed_and_keeps_nothing(hub: Hub, fake_plugin, api_key: str) -> None:
    add_fake_backend(hub, "slow", ["slow"], delay=0.01)
    with ThreadedServer(create_app(hub)) as server:
        response_id, _text = _hang_up(server, api_key, after=3, store=False)
        rows = _rows(hub, 1)
        time.sleep(0.3)
        got = httpx.get(f"{server.url}/v1/responses/{response_id}", headers={"authorization": f"Bearer {api_key}"})
    assert len(rows) == 1 and rows[0].completion_tokens > 0
    assert got.status_code == 404


def test_a_non_streaming_client_that_hangs_up_is_billed_and_stored_cancelled(
    hub: Hub, fake_plugin, api_key: str
) -> None:
    add_fake_backend(hub, "slow", ["slow"], delay=0.01)
    with ThreadedServer(create_app(hub)) as server:
        try:
            httpx.post(f"{server.url}/v1/responses", headers={"authorization": f"Bearer {api_key}"},
                       json={"model": "slow", "input": WORDS}, timeout=0.5)
        except httpx.ReadTimeout:
            pass  # the client gave up waiting: its socket closes
        rows = _rows(hub, 1)
        with hub.db.session() as s:
            from sovhub.api.responses.tables import StoredResponse

            stored = list(s.scalars(select(StoredResponse)))
    # Billed once, for what was generated until the hang-up stopped it (not the whole answer).
    assert len(rows) == 1 and 0 < rows[0].completion_tokens < 400
    assert [r.status for r in stored] == ["cancelled"]
