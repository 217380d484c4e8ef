"""Interactive requests preempt batch work on the real bundled model (SmolLM2-135M through llama.cpp, in-process:
batch.embedded_process off, as on systems other than Linux; the batch process has its own tests).

A batch line asks for a long answer; once it holds the model, an interactive streamed request
arrives. The line must yield at its next token (its partial answer dropped, the line run again),
so the interactive request's first token comes long before the line could have finished, and the
line ends after the interactive request with exactly one result, one usage row.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sovhub.accounts import create_key, create_org
from sovhub.batches.tables import BatchLine
from sovhub.hub import Hub, build_hub
from sovhub.metering import Meter
from sovhub.store.tables import UsageRecord
from tests.conftest import make_settings

MODEL = "smollm2-135m-instruct"
LONG = "Count from 1 to 200, one number after another, separated by commas."


@pytest.fixture
def real(data_dir: Path) -> Iterator[tuple[Hub, TestClient, openai.OpenAI]]:
    from sovhub.app import create_app

    hub = build_hub(make_settings(data_dir, safety={"enabled": False}, embedded_enabled=True,
                                  embeddings_enabled=False, embedded_max_tokens=128,
                                  # No grace: the line must hold the model when the interactive request comes
                                  # (with the default 3 s it still waits out the grace after the warm-up and
                                  # the `alone` request, and the interactive request just takes the free model).
                                  batch={"poll_interval_s": 0.05, "lease_s": 30.0, "interactive_grace_s": 0,
                                         "embedded_process": False}))
    create_org(hub, "acme")
    key = create_key(hub, "acme").secret
    try:
        with TestClient(create_app(hub), headers={"authorization": f"Bearer {key}"}) as client:
            sdk = openai.OpenAI(base_url=f"{client.base_url}/v1", api_key=key, http_client=client, max_retries=0)
            yield hub, client, sdk
    finally:
        hub.close()


def _line(hub: Hub) -> BatchLine | None:
    with hub.db.session() as s:
        return s.scalars(select(BatchLine)).one_or_none()


def _status(hub: Hub) -> str | None:
    line = _line(hub)
    return line.status if line is not None else None


def _first_token_s(client: TestClient) -> tuple[float, float]:
    """Seconds to the first content chunk and to the end of a short streamed interactive request."""
    body = {"model": MODEL, "stream": True, "max_tokens": 4, "temperature": 0,
            "messages": [{"role": "user", "content": "Name a colour."}]}
    started = time.perf_counter()
    first = None
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if first is None and line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                first = time.perf_counter() - started
    assert first is not None
    return first, time.perf_counter() - started


@pytest.mark.slow
def test_an_interactive_request_preempts_a_running_batch_line(real: tuple[Hub, TestClient, openai.OpenAI]) -> None:
    hub, client, sdk = real
    _first_token_s(client)  # warm the model
    # The line alone, undisturbed: how long its answer takes.
    alone_started = time.perf_counter()
    alone = client.post("/v1/chat/completions", json={
        "model": MODEL, "max_tokens": 128, "temperature": 0, "messages": [{"role": "user", "content": LONG}]})
    alone_s = time.perf_counter() - alone_started
    assert alone.status_code == 200 and alone.json()["usage"]["completion_tokens"] >= 48, alone.text

    line = {"custom_id": "long", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": MODEL, "max_tokens": 128, "temperature": 0,
                     "messages": [{"role": "user", "content": LONG}]}}
    file_id = sdk.files.create(file=("in.jsonl", io.BytesIO(json.dumps(line).encode() + b"\n")),
                               purpose="batch").id
    batch = sdk.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    deadline = time.monotonic() + 60
    while _status(hub) != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _status(hub) == "running"
    time.sleep(min(1.0, alone_s / 4))  # well inside its answer
    ttft_s, interactive_s = _first_token_s(client)
    interactive_done = time.time()

    deadline = time.monotonic() + 120
    while sdk.batches.retrieve(batch.id).status != "completed" and time.monotonic() < deadline:
        time.sleep(0.1)
    done = sdk.batches.retrieve(batch.id)
    assert done.status == "completed"
    final = _line(hub)
    assert final is not None and final.attempts >= 2, "the batch line was not preempted"
    assert final.finished_at is not None and final.finished_at.timestamp() > interactive_done
    # The interactive request did not wait for the line's answer.
    assert ttft_s < alone_s / 2, (ttft_s, alone_s)
    output = [json.loads(x) for x in sdk.files.content(done.output_file_id or "").text.splitlines()]
    assert [o["custom_id"] for o in output] == ["long"]
    client.portal.call(hub.services.get(Meter).flush)  # type: ignore[union-attr]
    with hub.db.session() as s:
        rows = list(s.scalars(select(UsageRecord).where(UsageRecord.batch_id == batch.id)))
    assert len(rows) == 1 and rows[0].completion_tokens == output[0]["response"]["body"]["usage"]["completion_tokens"]
    print(f"line alone {alone_s:.2f} s; interactive TTFT {ttft_s * 1000:.0f} ms, done in {interactive_s:.2f} s "
          f"while the line ran; line attempts {final.attempts}")  # noqa: T201


GRACE_S = 5.0  # generous: the test's interactive requests follow one another within milliseconds


@pytest.fixture
def graced(data_dir: Path) -> Iterator[tuple[Hub, TestClient, openai.OpenAI]]:
    from sovhub.app import create_app

    hub = build_hub(make_settings(data_dir, safety={"enabled": False}, embedded_enabled=True,
                                  embeddings_enabled=False, embedded_max_tokens=32,
                                  batch={"poll_interval_s": 0.05, "lease_s": 30.0, "interactive_grace_s": GRACE_S,
                                         "embedded_process": False}))
    create_org(hub, "acme")
    key = create_key(hub, "acme").secret
    try:
        with TestClient(create_app(hub), headers={"authorization": f"Bearer {key}"}) as client:
            sdk = openai.OpenAI(base_url=f"{client.base_url}/v1", api_key=key, http_client=client, max_retries=0)
            yield hub, client, sdk
    finally:
        hub.close()


@pytest.mark.slow
def test_batch_lines_wait_out_the_grace_after_interactive_requests(
        graced: tuple[Hub, TestClient, openai.OpenAI]) -> None:
    hub, client, sdk = graced
    _first_token_s(client)  # warm the model; the grace starts
    line = {"custom_id": "short", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": MODEL, "max_tokens": 16, "temperature": 0,
                     "messages": [{"role": "user", "content": LONG}]}}
    file_id = sdk.files.create(file=("in.jsonl", io.BytesIO(json.dumps(line).encode() + b"\n")),
                               purpose="batch").id
    batch = sdk.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    deadline = time.monotonic() + 60
    while _status(hub) != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _status(hub) == "running"  # claimed, and waiting in the background lane
    for _ in range(3):  # follow-ups inside the grace: each finds the model free, none preempts the line
        _first_token_s(client)
    last_interactive = time.time()
    deadline = time.monotonic() + 120
    while sdk.batches.retrieve(batch.id).status != "completed" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sdk.batches.retrieve(batch.id).status == "completed"
    final = _line(hub)
    assert final is not None and final.attempts == 1, "the line started inside the grace and was preempted"
    assert final.finished_at is not None
    # Not before the grace after the last interactive request (0.5 s for the clocks' rounding).
    assert final.finished_at.timestamp() >= last_interactive + GRACE_S - 0.5, (final.finished_at, last_interactive)
