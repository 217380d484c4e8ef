"""Black box: a real `sovhub serve` stopped mid-batch, then another killed with SIGKILL mid-batch; the batch
finishes on the next replica with every custom_id exactly once (the openai SDK throughout)."""

from __future__ import annotations

import io
import json
import signal
import time
from pathlib import Path

import openai
import pytest

from tests.contract.schemas import assert_valid
from tests.server import RemoteHub, run_cli

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
LINES = 24
ENV = {"SOVHUB_BATCH__LEASE_S": "3", "SOVHUB_BATCH__POLL_INTERVAL_S": "0.1",
       "SOVHUB_BATCH__MAX_CAPACITY_SHARE": "0.3", "SOVHUB_EMBEDDED_MAX_TOKENS": "4",
       "SOVHUB_SERVER__DRAIN_SECONDS": "0"}


def _progress(client: openai.OpenAI, batch_id: str) -> tuple[str, int]:
    batch = client.batches.retrieve(batch_id)
    return batch.status, batch.request_counts.completed if batch.request_counts else 0


def _until(client: openai.OpenAI, batch_id: str, done: int, timeout: float = 900) -> tuple[str, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, completed = _progress(client, batch_id)
        if completed >= done or status in ("completed", "failed", "expired", "cancelled"):
            return status, completed
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} did not reach {done} lines in {timeout}s")


def test_batch_survives_a_restart_and_a_killed_replica(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    run_cli(data_dir, "init", "--jurisdiction", "UA")
    run_cli(data_dir, "orgs", "create", "nightly")
    key = run_cli(data_dir, "keys", "create", "--org", "nightly").stdout.strip().splitlines()[-1]
    lines = b"".join(json.dumps({"custom_id": f"job-{i}", "method": "POST", "url": "/v1/chat/completions",
                                 "body": {"model": MODEL, "max_tokens": 4, "temperature": 0,
                                          "messages": [{"role": "user", "content": f"Count to {i}."}]}}).encode()
                     + b"\n" for i in range(LINES))

    first = RemoteHub(data_dir, env=ENV).start()
    try:
        client = openai.OpenAI(base_url=f"{first.url}/v1", api_key=key, max_retries=0)
        file_id = client.files.create(file=("jobs.jsonl", io.BytesIO(lines)), purpose="batch").id
        batch_id = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                         completion_window="24h").id
        status, before_restart = _until(client, batch_id, 3)
        assert status == "in_progress" and before_restart < LINES
    finally:
        assert first.stop(signal.SIGTERM) is not None  # graceful: gives its lines back

    second = RemoteHub(data_dir, env=ENV).start()
    client = openai.OpenAI(base_url=f"{second.url}/v1", api_key=key, max_retries=0)
    status, before_kill = _until(client, batch_id, before_restart + 3)
    assert status == "in_progress" and before_kill < LINES
    second.stop(signal.SIGKILL)
    assert second.proc is not None and second.proc.returncode == -signal.SIGKILL

    with RemoteHub(data_dir, env=ENV) as third:
        client = openai.OpenAI(base_url=f"{third.url}/v1", api_key=key, max_retries=0)
        status, completed = _until(client, batch_id, LINES)
        deadline = time.monotonic() + 60
        while status != "completed" and time.monotonic() < deadline:
            time.sleep(0.2)
            status, completed = _progress(client, batch_id)
        batch = client.batches.retrieve(batch_id)
        assert batch.status == "completed", batch
        assert batch.request_counts is not None and batch.request_counts.completed == LINES
        import httpx

        assert_valid("Batch", httpx.get(f"{third.url}/v1/batches/{batch_id}",
                                        headers={"authorization": f"Bearer {key}"}).json())
        assert batch.output_file_id is not None
        out = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
    ids = [o["custom_id"] for o in out]
    assert sorted(ids) == sorted(f"job-{i}" for i in range(LINES)) and len(ids) == len(set(ids))
    assert all(o["response"]["status_code"] == 200 for o in out)
    assert_valid("CreateChatCompletionResponse", out[0]["response"]["body"])
