"""The Files and Batch APIs through the official openai SDK, in-process (TestClient is an httpx.Client)."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from fastapi.testclient import TestClient

from sovhub.accounts import create_key, create_org
from sovhub.hub import Hub


@pytest.fixture
def sdk(app_client: TestClient, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{app_client.base_url}/v1", api_key=api_key, http_client=app_client,
                         max_retries=0)


@pytest.fixture
def other_sdk(hub: Hub, app_client: TestClient) -> Iterator[openai.OpenAI]:
    """A client of another organization, on the same app."""
    create_org(hub, "rival")
    secret = create_key(hub, "rival").secret
    client = TestClient(app_client.app, headers={"authorization": f"Bearer {secret}"})
    yield openai.OpenAI(base_url=f"{client.base_url}/v1", api_key=secret, http_client=client, max_retries=0)
