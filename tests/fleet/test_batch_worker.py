"""`sovhub batch-worker`: batches run on workers while the gateways (batch.enabled = false) only take them; a
worker serves no API, and on SIGTERM finishes the line it runs, takes no other, and exits without waiting out
its drain; the next worker finishes the batch with every line exactly once."""

from __future__ import annotations

import io
import json
import signal
import time

import httpx
import openai
import pytest

from tests.server import run_cli
from tests.upstream_server import FakeUpstream

from .conftest import Fleet

pytestmark = [pytest.mark.slow, pytest.mark.services]

LINES = 6
#: Each line's answer takes 5 x 0.3 s at the upstream: long enough to SIGTERM a worker in the middle of one.
SLOW = {"delay": 0.3, "words": 5}
WORKER = {"SOVHUB_BATCH__POLL_INTERVAL_S": "0.1", "SOVHUB_BATCH__LEASE_S": "5",
          "SOVHUB_SERVER__DRAIN_SECONDS": "30"}


def _batch(client: openai.OpenAI) -> str:
    lines = b"".join(json.dumps({"custom_id": f"job-{i}", "method": "POST", "url": "/v1/chat/completions",
                                 "body": {"model": "tiny", "messages": [{"role": "user", "content": f"n{i}"}]}}
                                ).encode() + b"\n" for i in range(LINES))
    file_id = client.files.create(file=("jobs.jsonl", io.BytesIO(lines)), purpose="batch").id
    return client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h").id


def _completed(client: openai.OpenAI, batch_id: str) -> tuple[str, int, int]:
    batch = client.batches.retrieve(batch_id)
    counts = batch.request_counts
    return batch.status, counts.completed if counts else 0, counts.failed if counts else 0


def _until(client: openai.OpenAI, batch_id: str, done: int, timeout: float = 120) -> tuple[str, int, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, completed, failed = _completed(client, batch_id)
        if completed >= done or status in ("completed", "failed", "expired", "cancelled"):
            return status, completed, failed
        time.sleep(0.1)
    raise AssertionError(f"batch {batch_id} did not reach {done} lines in {timeout} s")


def test_workers_run_the_batches_the_gateways_take(make_fleet: object) -> None:
    fleet: Fleet = make_fleet(FakeUpstream(["tiny"], **SLOW))  # type: ignore[operator]
    (gateway,) = fleet.start(1, SOVHUB_BATCH__ENABLED="false")
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=fleet.key, max_retries=0)
    batch_id = _batch(client)
    time.sleep(2.0)  # twenty of a runner's polls: a gateway with batch.enabled = false takes no line
    assert _completed(client, batch_id) == ("validating", 0, 0)
    assert fleet.upstream.requests == []

    (worker,) = fleet.start(1, command="batch-worker", **WORKER)
    assert httpx.get(worker.url + "/healthz", timeout=5).status_code == 200
    assert httpx.get(worker.url + "/readyz", timeout=5).json()["status"] == "ready"
    api = httpx.get(worker.url + "/v1/models", headers={"authorization": f"Bearer {fleet.key}"}, timeout=5)
    assert api.status_code == 404, "a worker serves no API"

    status, before, _ = _until(client, batch_id, 2)
    assert status == "in_progress" and before < LINES, client.batches.retrieve(batch_id).errors
    # The worker is inside a line (each takes ~1.5 s): SIGTERM must let it finish, then exit at once.
    time.sleep(0.4)
    assert worker.proc is not None
    signalled = time.perf_counter()
    worker.proc.send_signal(signal.SIGTERM)
    code = worker.proc.wait(20)
    exited_after = time.perf_counter() - signalled
    status, after_stop, failed = _completed(client, batch_id)
    print(f"\nbatch worker: SIGTERM mid-line, exited after {exited_after:.1f} s (drain bound 30 s) with code "
          f"{code}; lines done {before} at the signal, {after_stop} after; {failed} failed")
    # uvicorn re-raises the signal it handled once it has shut down: -SIGTERM is its clean exit.
    assert code == -signal.SIGTERM and exited_after < 10, "an idle worker does not wait out server.drain_seconds"
    assert failed == 0 and status == "in_progress"
    assert after_stop == before + 1, "the running line was finished, and no new one was taken after SIGTERM"
    assert "drained after" in worker.log()

    (second,) = fleet.start(1, command="batch-worker", **WORKER)
    status, completed, failed = _until(client, batch_id, LINES)
    deadline = time.monotonic() + 30
    while status != "completed" and time.monotonic() < deadline:
        time.sleep(0.1)
        status, completed, failed = _completed(client, batch_id)
    assert (status, completed, failed) == ("completed", LINES, 0)
    batch = client.batches.retrieve(batch_id)
    assert batch.output_file_id is not None
    ids = [json.loads(x)["custom_id"] for x in client.files.content(batch.output_file_id).text.splitlines()]
    assert sorted(ids) == sorted(f"job-{i}" for i in range(LINES)), ids
    assert len(fleet.upstream.requests) == LINES, "every line went upstream exactly once"


def test_a_worker_refuses_to_start_without_batches(make_fleet: object) -> None:
    fleet: Fleet = make_fleet()  # type: ignore[operator]
    result = run_cli(fleet.root / "setup", "batch-worker", check=False,
                     env=fleet.env(SOVHUB_BATCH__ENABLED="false"))
    assert result.returncode == 1
    assert "batch.enabled is false" in result.stderr
