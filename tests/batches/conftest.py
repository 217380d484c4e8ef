"""Batches in-process: the real app and runner over a fake `echo` backend, driven with the openai SDK."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient

from sovhub.accounts import create_key, create_org
from sovhub.hub import Hub
from sovhub.settings import Settings
from tests.conftest import make_settings

TERMINAL = {"completed", "failed", "expired", "cancelled"}


@pytest.fixture
def batch_settings() -> dict[str, Any]:
    return {"poll_interval_s": 0.05, "lease_s": 5.0}


@pytest.fixture
def settings(data_dir: Path, batch_settings: dict[str, Any]) -> Settings:
    return make_settings(data_dir, safety={"enabled": False}, batch=batch_settings)


@pytest.fixture
def sdk(app_client: TestClient, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{app_client.base_url}/v1", api_key=api_key, http_client=app_client,
                         max_retries=0)


@pytest.fixture
def other_sdk(hub: Hub, app_client: TestClient) -> Iterator[openai.OpenAI]:
    create_org(hub, "rival")
    secret = create_key(hub, "rival").secret
    client = TestClient(app_client.app, headers={"authorization": f"Bearer {secret}"})
    yield openai.OpenAI(base_url=f"{client.base_url}/v1", api_key=secret, http_client=client, max_retries=0)


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def chat_line(custom_id: str, text: str, model: str = "echo", **extra: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": text}], **extra}}


def upload(sdk: openai.OpenAI, lines: list[dict[str, Any]]) -> str:
    return sdk.files.create(file=("input.jsonl", io.BytesIO(jsonl(lines))), purpose="batch").id


def wait_for(sdk: openai.OpenAI, batch_id: str, statuses: set[str] | None = None, timeout: float = 60) -> Any:
    wanted = statuses or TERMINAL
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = sdk.batches.retrieve(batch_id)
        if batch.status in wanted:
            return batch
        time.sleep(0.05)
    raise AssertionError(f"batch {batch_id} still {batch.status} after {timeout}s")


def read_lines(sdk: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(x) for x in sdk.files.content(file_id).text.splitlines()]
