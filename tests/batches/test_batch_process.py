"""The embedded model's batch lines in their own process (batch.embedded_process), on the real bundled model.

An interactive request stops the batch process with SIGSTOP (``/proc/<pid>/stat`` state ``T``) and it
resumes after the grace, the line losing no work (one attempt); a seeded line answers exactly what the
same request answers in-process; the process dies with its parent, even stopped; a crashed process is
started again and its line retried, metered once; a line stopped past its batch's window expires.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sovhub.accounts import create_key, create_org
from sovhub.backends.batch_process import BatchProcess, supported
from sovhub.backends.embedded import EmbeddedBackend
from sovhub.backends.registry import BackendRegistry
from sovhub.batches.tables import BatchLine
from sovhub.hub import Hub, build_hub
from sovhub.metering import Meter
from sovhub.store.tables import UsageRecord
from tests.conftest import make_settings

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not supported(), reason="stopping a process: Linux only")]

MODEL = "smollm2-135m-instruct"
LONG = "Count from 1 to 200, one number after another, separated by commas."
GRACE_S = 1.0


def _hub(data_dir: Path, **batch: Any) -> Hub:
    return build_hub(make_settings(data_dir, safety={"enabled": False}, embedded_enabled=True,
                                   embeddings_enabled=False, embedded_max_tokens=128,
                                   batch={"poll_interval_s": 0.05, "lease_s": 30.0, "interactive_grace_s": GRACE_S,
                                          **batch}))


@pytest.fixture
def batch_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
def real(data_dir: Path, batch_settings: dict[str, Any]) -> Iterator[tuple[Hub, TestClient, openai.OpenAI]]:
    from sovhub.app import create_app

    hub = _hub(data_dir, **batch_settings)
    create_org(hub, "acme")
    key = create_key(hub, "acme").secret
    try:
        with TestClient(create_app(hub), headers={"authorization": f"Bearer {key}"}) as client:
            sdk = openai.OpenAI(base_url=f"{client.base_url}/v1", api_key=key, http_client=client, max_retries=0)
            yield hub, client, sdk
    finally:
        hub.close()


def _embedded(hub: Hub) -> EmbeddedBackend:
    backend = next(b for b in hub.services.get(BackendRegistry).backends if isinstance(b, EmbeddedBackend))
    assert backend.batch_process is not None, "batch.embedded_process is on by default"
    return backend


def _stat(pid: int) -> tuple[str, int]:
    """The process's state letter and its CPU ticks (user + system), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return fields[0], int(fields[11]) + int(fields[12])


def _reaches(pid: int, states: str, timeout: float = 2.0) -> str:
    """The process's state once it is one of `states` (a signal takes effect when the process next runs: on a
    loaded machine, some milliseconds after it was sent), or the last state seen."""
    deadline = time.monotonic() + timeout
    while (state := _stat(pid)[0]) not in states and time.monotonic() < deadline:
        time.sleep(0.001)
    return state


def _dead(pid: int) -> bool:
    try:
        return _stat(pid)[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def _submit(sdk: openai.OpenAI, body: dict[str, Any]) -> str:
    line = {"custom_id": "one", "method": "POST", "url": "/v1/chat/completions", "body": body}
    file_id = sdk.files.create(file=("in.jsonl", io.BytesIO(json.dumps(line).encode() + b"\n")), purpose="batch").id
    return sdk.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h").id


def _line(hub: Hub) -> BatchLine | None:
    with hub.db.session() as s:
        return s.scalars(select(BatchLine)).one_or_none()


def _answering(hub: Hub, process: BatchProcess, timeout: float = 60) -> int:
    """Wait until the loaded batch process has the line and burns CPU on it (not on loading the model); its pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = _line(hub)
        pid = process.pid
        if line is not None and line.status == "running" and pid is not None and process.answering:
            before = _stat(pid)[1]
            time.sleep(0.3)
            if _stat(pid)[1] > before:
                return pid
        time.sleep(0.02)
    raise AssertionError("the batch process never started answering the line")


def _done(sdk: openai.OpenAI, batch_id: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = sdk.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch
        time.sleep(0.1)
    raise AssertionError(f"batch {batch_id} still {batch.status}")


def _usage(client: TestClient, hub: Hub, batch_id: str) -> list[UsageRecord]:
    client.portal.call(hub.services.get(Meter).flush)  # type: ignore[union-attr]
    with hub.db.session() as s:
        return list(s.scalars(select(UsageRecord).where(UsageRecord.batch_id == batch_id)))


def _outputs(sdk: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    return [json.loads(x) for x in sdk.files.content(file_id or "").text.splitlines()]


def test_an_interactive_request_stops_the_batch_process_and_it_resumes_after_the_grace(
        real: tuple[Hub, TestClient, openai.OpenAI]) -> None:
    hub, client, sdk = real
    process = _embedded(hub).batch_process
    assert process is not None
    batch_id = _submit(sdk, {"model": MODEL, "max_tokens": 128, "temperature": 0,
                             "messages": [{"role": "user", "content": LONG}]})
    pid = _answering(hub, process)

    seen: dict[str, float] = {}
    stopped_ticks: list[int] = []

    def watch() -> None:
        # Poll the process's state while the interactive request runs.
        while "end" not in seen:
            state, ticks = _stat(pid)
            if state == "T":
                seen.setdefault("stopped", time.perf_counter())
                stopped_ticks.append(ticks)
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    body = {"model": MODEL, "stream": True, "max_tokens": 16, "temperature": 0,
            "messages": [{"role": "user", "content": "Name a colour."}]}
    ticks_sent = _stat(pid)[1]
    sent = time.perf_counter()
    watcher.start()
    try:
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            for raw in response.iter_lines():
                if "first" not in seen and '"content":"' in raw and '"content":""' not in raw:
                    seen["first"] = time.perf_counter()
                    assert _stat(pid)[0] == "T", "the batch process ran during the interactive request"
        ticks_end = _stat(pid)[1]
    finally:
        seen["end"] = time.perf_counter()
        watcher.join()
    assert "stopped" in seen, "the batch process was never stopped"
    assert process.stop_sent_at is not None and sent < process.stop_sent_at < seen["stopped"]
    # What the interactive request competes with: the batch process's CPU from the moment the request was
    # sent (its way to the model, then SIGSTOP, which takes effect the next time the process runs) to the
    # end of the answer: at most 50 ms of it, give or take the kernel's tick.
    ran_ms = (ticks_end - ticks_sent) * 1000 / os.sysconf("SC_CLK_TCK")
    assert ran_ms <= 50 + 1000 / os.sysconf("SC_CLK_TCK"), f"the batch process ran {ran_ms:.0f} ms of CPU"
    assert stopped_ticks[-1] == stopped_ticks[0] == ticks_end, stopped_ticks  # none at all once stopped
    signal_ms = (process.stop_sent_at - sent) * 1000
    assert signal_ms < 250, f"SIGSTOP only {signal_ms:.0f} ms after the request was sent"
    seen_ms = (seen["stopped"] - sent) * 1000  # as this test's polling thread saw it (it shares the GIL)
    assert _stat(pid)[0] == "T"  # still within the grace
    time.sleep(GRACE_S)
    assert _reaches(pid, "RSD") in "RSD", "the batch process was not resumed after the grace"

    done = _done(sdk, batch_id)
    assert done.status == "completed"
    final = _line(hub)
    assert final is not None and final.attempts == 1, "the line was preempted instead of paused"
    (output,) = _outputs(sdk, done.output_file_id)
    tokens = output["response"]["body"]["usage"]["completion_tokens"]
    (row,) = _usage(client, hub, batch_id)
    assert row.completion_tokens == tokens >= 48
    assert process.starts == 1 and process.pid == pid
    print(f"SIGSTOP {signal_ms:.1f} ms after the request was sent, seen stopped after {seen_ms:.1f} ms; the "  # noqa: T201
          f"batch process ran {ran_ms:.0f} ms of CPU meanwhile; first token {(seen['first'] - sent) * 1000:.0f} ms")


def test_a_seeded_line_answers_what_the_same_request_answers_in_process(
        real: tuple[Hub, TestClient, openai.OpenAI]) -> None:
    hub, client, sdk = real
    body = {"model": MODEL, "max_tokens": 40, "temperature": 0.9, "seed": 1234,
            "messages": [{"role": "user", "content": "Write a short poem about the sea."}]}
    interactive = client.post("/v1/chat/completions", json=body)
    assert interactive.status_code == 200
    done = _done(sdk, _submit(sdk, body))
    assert done.status == "completed"
    (output,) = _outputs(sdk, done.output_file_id)
    in_process, in_child = interactive.json(), output["response"]["body"]
    assert in_child["choices"][0]["message"]["content"] == in_process["choices"][0]["message"]["content"]
    assert in_child["usage"] == in_process["usage"]
    process = _embedded(hub).batch_process
    assert process is not None and process.starts == 1  # it ran in the batch process
    # A different seed gives a different answer: the comparison could have failed.
    other = client.post("/v1/chat/completions", json={**body, "seed": 99})
    assert other.json()["choices"][0]["message"]["content"] != in_process["choices"][0]["message"]["content"]


def test_a_crashed_batch_process_is_started_again_and_its_line_retried_and_metered_once(
        real: tuple[Hub, TestClient, openai.OpenAI]) -> None:
    hub, client, sdk = real
    process = _embedded(hub).batch_process
    assert process is not None
    batch_id = _submit(sdk, {"model": MODEL, "max_tokens": 64, "temperature": 0,
                             "messages": [{"role": "user", "content": LONG}]})
    pid = _answering(hub, process)
    os.kill(pid, signal.SIGKILL)
    done = _done(sdk, batch_id)
    assert done.status == "completed"
    final = _line(hub)
    assert final is not None and final.attempts == 2
    assert process.starts == 2 and process.pid not in (None, pid)
    (output,) = _outputs(sdk, done.output_file_id)
    assert output["custom_id"] == "one" and output["response"]["status_code"] == 200
    rows = _usage(client, hub, batch_id)
    assert len(rows) == 1, "the crashed attempt was metered too"
    assert rows[0].completion_tokens == output["response"]["body"]["usage"]["completion_tokens"]


@pytest.mark.parametrize("batch_settings", [{"window_s": 6.0, "lease_s": 1.5}])
def test_a_line_stopped_past_its_window_expires_and_is_not_metered(
        real: tuple[Hub, TestClient, openai.OpenAI]) -> None:
    hub, client, sdk = real
    process = _embedded(hub).batch_process
    assert process is not None
    client.portal.call(process.start)  # type: ignore[union-attr]  # loaded before the 6 s window starts
    batch_id = _submit(sdk, {"model": MODEL, "max_tokens": 128, "temperature": 0,
                             "messages": [{"role": "user", "content": LONG}]})
    pid = _answering(hub, process)
    client.portal.call(process.hold)  # type: ignore[union-attr]  # as an interactive request that goes on and on
    try:
        assert _reaches(pid, "T") == "T"
        done = _done(sdk, batch_id, timeout=20)
        assert done.status == "expired"
        assert done.request_counts is not None and done.request_counts.completed == 0
        (error,) = _outputs(sdk, done.error_file_id)
        assert error["error"]["code"] == "batch_expired"
        assert _stat(pid)[0] == "T"  # it expired while the process was still stopped
    finally:
        client.portal.call(process.unhold)  # type: ignore[union-attr]
    assert _usage(client, hub, batch_id) == []
    final = _line(hub)
    assert final is not None and final.status == "expired"


def test_a_batch_process_that_cannot_start_leaves_its_lines_to_run_in_process(
        real: tuple[Hub, TestClient, openai.OpenAI], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    hub, client, sdk = real
    process = _embedded(hub).batch_process
    assert process is not None
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a model")
    process.model_path = broken  # the child exits while loading it
    done = _done(sdk, _submit(sdk, {"model": MODEL, "max_tokens": 8, "temperature": 0,
                                    "messages": [{"role": "user", "content": "Say hello."}]}))
    assert done.status == "completed"
    (output,) = _outputs(sdk, done.output_file_id)
    assert output["response"]["status_code"] == 200
    assert process.starts == 1 and process.pid is None  # tried once, then the line ran in the hub
    final = _line(hub)
    assert final is not None and final.attempts == 1
    assert len(_usage(client, hub, done.id)) == 1
    assert any("batch process did not start" in r.getMessage() for r in caplog.records)


_PARENT = textwrap.dedent("""
    import asyncio, sys
    from sovhub.backends.batch_process import BatchProcess
    from sovhub.backends.embedded import bundled_model_path

    async def main() -> None:
        process = BatchProcess(bundled_model_path(), threads=1, context=256, grace_s=0, name="orphan-test")
        await process.start()
        if sys.argv[1] == "stopped":
            process.hold()
        print(process.pid, flush=True)
        await asyncio.sleep(600)

    asyncio.run(main())
""")


@pytest.mark.parametrize("state", ["running", "stopped"])
def test_the_batch_process_dies_with_its_parent(state: str, tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(_PARENT)
    parent = subprocess.Popen([sys.executable, str(script), state], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _reaches(child, "T" if state == "stopped" else "S") == ("T" if state == "stopped" else "S")
        parent.kill()  # SIGKILL: no clean-up in the parent runs
        parent.wait(10)
        deadline = time.monotonic() + 5
        while not _dead(child) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _dead(child), f"batch process {child} outlived its parent ({state})"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
