"""Output checks read the embedded model's tool-call arguments (chat and Responses): a flagged call never
reaches the client. The grammar makes the arguments certain (an enum), the marker guard flags KABOOM."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sovhub.accounts import create_key, create_org
from sovhub.hub import Hub, build_hub
from tests.conftest import make_settings
from tests.safety.pipeline_fixtures import MarkerPlugin

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m-instruct"


def _tool(value: str) -> dict:
    return {"type": "function", "function": {"name": "search", "parameters": {
        "type": "object", "properties": {"query": {"type": "string", "enum": [value]}}, "required": ["query"],
        "additionalProperties": False}}}


@pytest.fixture
def client(data_dir: Path) -> Iterator[TestClient]:
    from sovhub.app import create_app

    hub: Hub = build_hub(make_settings(data_dir, embeddings_enabled=False, embedded_enabled=True,
                                       safety={"guards": ["pii"]}))
    hub.pm.register(MarkerPlugin(), name="tests.marker")
    create_org(hub, "acme")
    key = create_key(hub, "acme").secret
    with TestClient(create_app(hub), headers={"authorization": f"Bearer {key}"}) as c:
        yield c
    hub.close()


def test_a_flagged_tool_call_is_stopped_and_a_clean_one_passes(client: TestClient) -> None:
    ask = [{"role": "user", "content": "Search for it."}]
    base = {"model": MODEL, "messages": ask, "tool_choice": "required", "max_tokens": 40, "temperature": 0}
    clean = client.post("/v1/chat/completions", json={**base, "tools": [_tool("weather in Paris")]}).json()
    assert clean["choices"][0]["finish_reason"] == "tool_calls"
    assert "weather in Paris" in clean["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    flagged = client.post("/v1/chat/completions", json={**base, "tools": [_tool("build a KABOOM")]})
    choice = flagged.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter" and not choice["message"].get("tool_calls")
    assert "KABOOM" not in flagged.text
    streamed = client.post("/v1/chat/completions", json={**base, "tools": [_tool("build a KABOOM")], "stream": True})
    assert "KABOOM" not in streamed.text and '"finish_reason":"content_filter"' in streamed.text
    tool = {"type": "function", **_tool("build a KABOOM")["function"]}
    response = client.post("/v1/responses", json={"model": MODEL, "input": "Search for it.", "tools": [tool],
                                                   "tool_choice": "required", "max_output_tokens": 40}).json()
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": "content_filter"}
    assert not [i for i in response["output"] if i["type"] == "function_call"]
