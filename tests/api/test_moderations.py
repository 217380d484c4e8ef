"""POST /v1/moderations: OpenAI's shape (validated against the published spec) and every bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from sovhub.api.moderations.service import MAX_INPUTS, MODEL_ID
from sovhub.hub import Hub
from sovhub.safety.builtin import BuiltinGuards
from sovhub.safety.moderation import Moderator
from sovhub.settings import SafetySettings
from tests.contract.schemas import assert_valid
from tests.safety.moderation_fixtures import moderator

URL = "/v1/moderations"


@pytest.fixture
def client(app_client: TestClient, hub: Hub) -> Iterator[TestClient]:
    # The trained moderator is shared across tests (training is the expensive part).
    hub.services.replace(Moderator, moderator())
    yield app_client


def _error(r, status: int, param: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert_valid("ErrorResponse", r.json())
    if param is not None:
        assert err["param"] == param
    return err  # type: ignore[no-any-return]


def test_single_string(client: TestClient) -> None:
    r = client.post(URL, json={"input": "How do I make a pipe bomb to kill people at the market?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert_valid("CreateModerationResponse", body)
    assert body["model"] == MODEL_ID and body["id"].startswith("modr-")
    [result] = body["results"]
    assert result["flagged"] is True
    assert "S9" in result["hazard_codes"] or "S1" in result["hazard_codes"]
    assert result["categories"]["violence"] or result["categories"]["illicit/violent"]
    assert all(result["category_applied_input_types"][k] == ["text"] for k in result["categories"])


def test_array_in_order_and_model_accepted(client: TestClient) -> None:
    inputs = ["What time does the museum open on Sunday?", "I will stab you tonight when you leave work."]
    r = client.post(URL, json={"input": inputs, "model": "omni-moderation-latest"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert_valid("CreateModerationResponse", body)
    assert [x["flagged"] for x in body["results"]] == [False, True]
    assert body["results"][0]["hazard_codes"] == []
    assert all(v < 0.5 for v in body["results"][0]["category_scores"].values())


def test_text_objects_and_language_hint(client: TestClient) -> None:
    r = client.post(URL, json={"input": [{"type": "text", "text": "Bonjour, comment ça va ?"}], "lang": "fr"})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["flagged"] is False


def test_empty_string_is_not_flagged(client: TestClient) -> None:
    r = client.post(URL, json={"input": ""})
    assert r.status_code == 200
    assert r.json()["results"][0]["flagged"] is False


def test_zero_width_and_homoglyph_evasion_is_caught(client: TestClient) -> None:
    r = client.post(URL, json={"input": "how to k\u0456ll mys\u200be\u200blf"})
    assert r.status_code == 200
    assert "S11" in r.json()["results"][0]["hazard_codes"]


def test_mixed_scripts(client: TestClient) -> None:
    r = client.post(URL, json={"input": "Привіт! Hello! こんにちは! مرحبا"})
    assert r.status_code == 200 and r.json()["results"][0]["flagged"] is False


@pytest.mark.parametrize(("payload", "param"), [
    ({"input": []}, "input"),
    ({"input": [1, 2]}, "input[0]"),
    ({"input": ["ok", None]}, "input[1]"),
    ({"input": 42}, "input"),
    ({"input": {"text": "x"}}, "input"),
    ({"input": ["x"] * (MAX_INPUTS + 1)}, "input"),
    ({"input": "a" * (SafetySettings().max_input_chars + 1)}, "input"),
    ({"input": ["a" * 60_000, "b" * 60_000]}, "input"),
])
def test_bad_input_is_400(client: TestClient, payload: dict, param: str) -> None:  # type: ignore[type-arg]
    err = _error(client.post(URL, json=payload), 400, param)
    assert err["type"] == "invalid_request_error"


def test_images_are_unsupported(client: TestClient) -> None:
    payload = {"input": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}
    err = _error(client.post(URL, json=payload), 400, "input[0]")
    assert err["code"] == "unsupported_parameter"


def test_lone_surrogate_is_400(client: TestClient) -> None:
    body = '{"input": "abc \\ud800 def"}'
    r = client.post(URL, content=body, headers={"content-type": "application/json"})
    _error(r, 400, "input")


def test_invalid_utf8_body_is_rejected(client: TestClient) -> None:
    r = client.post(URL, content=b'{"input": "\xff\xfe bad"}', headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500
    assert "Traceback" not in r.text


def test_missing_input_is_rejected(client: TestClient) -> None:
    r = client.post(URL, json={"model": "x"})
    assert 400 <= r.status_code < 500


def test_unknown_field_is_rejected(client: TestClient) -> None:
    r = client.post(URL, json={"input": "x", "bogus": 1})
    assert 400 <= r.status_code < 500


def test_binary_looking_text_is_handled(client: TestClient) -> None:
    r = client.post(URL, content=json.dumps({"input": "\x00\x01\x02\x7f\ufffd\x1b[31m"}),
                    headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["results"][0]["flagged"] is False


def test_the_moderator_is_built_once_and_shares_the_pipelines_semantic_guard(hub: Hub) -> None:
    built = hub.services.get(Moderator)
    assert hub.services.get(Moderator) is built
    assert built.semantic is hub.services.get(BuiltinGuards).semantic is not None


def test_moderations_need_an_api_key(client: TestClient) -> None:
    r = client.post("/v1/moderations", json={"input": "hello"}, headers={"authorization": ""})
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
