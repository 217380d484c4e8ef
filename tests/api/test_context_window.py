"""The API refuses, with OpenAI's 400 context_length_exceeded, a request the bundled model cannot fit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sovhub.accounts import create_key, create_org
from sovhub.hub import Hub, build_hub
from tests.conftest import make_settings


@pytest.fixture
def client(data_dir: Path) -> Iterator[TestClient]:
    from sovhub.app import create_app

    hub: Hub = build_hub(make_settings(data_dir, safety={"enabled": False}, embedded_enabled=True,
                                       embeddings_enabled=False))
    create_org(hub, "acme")
    key = create_key(hub, "acme").secret
    with TestClient(create_app(hub), headers={"authorization": f"Bearer {key}"}) as c:
        yield c
    hub.close()


def test_messages_that_do_not_fit_get_a_400_not_a_503(client: TestClient) -> None:
    model = "smollm2-135m-instruct"
    long = "Прошу пояснити порядок оформлення паспорта. " * 400
    response = client.post("/v1/chat/completions", json={"model": model, "messages": [
        {"role": "user", "content": long}]})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert error["type"] == "invalid_request_error" and "2048" in error["message"]
    # The prompt fits, but not with the answer asked for.
    asked = client.post("/v1/chat/completions", json={"model": model, "max_tokens": 2040,
                                                      "messages": [{"role": "user", "content": "Hello there"}]})
    assert asked.status_code == 400 and asked.json()["error"]["code"] == "context_length_exceeded"
    streamed = client.post("/v1/chat/completions", json={"model": model, "stream": True, "messages": [
        {"role": "user", "content": long}]})
    assert streamed.status_code == 400 and streamed.json()["error"]["code"] == "context_length_exceeded"


def test_a_request_that_fits_is_answered(client: TestClient) -> None:
    response = client.post("/v1/chat/completions", json={
        "model": "smollm2-135m-instruct", "max_tokens": 8, "messages": [{"role": "user", "content": "Say hi"}]})
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] <= 8
