"""The chat parameters of structured outputs, tools and logprobs: shape checked for every backend,
refused by a backend that cannot honour them (the fake one here), never silently dropped."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.contract.schemas import assert_valid

MSG = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.mark.parametrize("extra", [
    {"top_logprobs": 2},
    {"logprobs": True, "top_logprobs": 21},
    {"tool_choice": "required"},
    {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "other"}}},
    {"tools": [TOOL], "tool_choice": "sometimes"},
    {"tools": [{"type": "function", "function": {"name": "has space"}}]},
    {"tools": [TOOL, TOOL]},
    {"tools": [{"type": "retrieval"}]},
    {"tools": [{"type": "function", "function": {"name": "f", "parameters": "object"}}]},
    {"response_format": {"type": "xml"}},
    {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": []}}},
])
def test_malformed_parameters_are_400(app_client: TestClient, extra: dict) -> None:
    r = app_client.post("/v1/chat/completions", json={"model": "echo", "messages": MSG, **extra})
    assert r.status_code == 400, r.text
    assert_valid("ErrorResponse", r.json())


@pytest.mark.parametrize("extra", [
    {"tools": [TOOL]},
    {"response_format": {"type": "json_object"}},
    {"logprobs": True},
    {"parallel_tool_calls": False, "tools": [TOOL]},
])
def test_a_backend_that_cannot_honour_them_refuses(app_client: TestClient, extra: dict) -> None:
    r = app_client.post("/v1/chat/completions", json={"model": "echo", "messages": MSG, **extra})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_parameter"
