"""Every error path of the core API, and the one error shape (pinned here)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from sovhub.accounts import revoke_key
from sovhub.hub import Hub
from tests.conftest import add_fake_backend
from tests.contract.schemas import assert_valid

CHAT = "/v1/chat/completions"
MSG = [{"role": "user", "content": "hi"}]


def _error(r, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    assert_valid("ErrorResponse", body)
    if code is not None:
        assert body["error"]["code"] == code
    assert "Traceback" not in r.text
    return body["error"]


def test_missing_key_is_401(app_client: TestClient) -> None:
    r = app_client.get("/v1/models", headers={"authorization": ""})
    _error(r, 401, "missing_api_key")


@pytest.mark.parametrize("secret", ["nonsense", "sk-sov-AAAAAAAA_bad", "Bearer", "sk-sov-"])
def test_bad_key_is_401(app_client: TestClient, secret: str) -> None:
    r = app_client.get("/v1/models", headers={"authorization": f"Bearer {secret}"})
    _error(r, 401)


def test_revoked_key_is_401_at_once(app_client: TestClient, hub: Hub, api_key: str) -> None:
    assert app_client.get("/v1/models").status_code == 200
    revoke_key(hub, api_key.split("_")[0])
    err = _error(app_client.get("/v1/models"), 401, "revoked_api_key")
    assert "revoked" in err["message"]


def test_unknown_model_is_404(app_client: TestClient) -> None:
    err = _error(app_client.post(CHAT, json={"model": "gpt-nope", "messages": MSG}), 404, "model_not_found")
    assert err["param"] == "model"
    _error(app_client.get("/v1/models/gpt-nope"), 404, "model_not_found")


@pytest.mark.parametrize(
    "body",
    [
        {"messages": MSG},
        {"model": "echo"},
        {"model": "echo", "messages": []},
        {"model": "echo", "messages": [{"role": "wizard", "content": "x"}]},
        {"model": "echo", "messages": MSG, "temperature": 3},
        {"model": "echo", "messages": MSG, "top_p": 0},
        {"model": "echo", "messages": MSG, "max_tokens": 0},
        {"model": "echo", "messages": MSG, "stop": ["a", "b", "c", "d", "e"]},
        {"model": "echo", "messages": MSG, "stream_options": {"include_usage": True}},
        {"model": "echo", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
        {"model": 5, "messages": MSG},
    ],
)
def test_bad_input_is_400(app_client: TestClient, body: dict) -> None:
    _error(app_client.post(CHAT, json=body), 400, "invalid_value")


def test_malformed_json_is_400(app_client: TestClient) -> None:
    r = app_client.post(CHAT, content=b"{not json", headers={"content-type": "application/json"})
    err = _error(r, 400)
    assert "JSON" in err["message"]


def test_binary_body_is_400(app_client: TestClient) -> None:
    r = app_client.post(CHAT, content=bytes(range(256)), headers={"content-type": "application/json"})
    _error(r, 400)


def test_n_greater_than_one_is_refused_not_ignored(app_client: TestClient) -> None:
    err = _error(app_client.post(CHAT, json={"model": "echo", "messages": MSG, "n": 3}), 400, "unsupported_parameter")
    assert err["param"] == "n"


def test_unknown_parameter_is_refused(app_client: TestClient) -> None:
    body = {"model": "echo", "messages": MSG, "response_format": {"type": "json_object"}}
    err = _error(app_client.post(CHAT, json=body), 400, "unsupported_parameter")
    assert "response_format" in err["message"]


def test_body_too_large_is_413(hub: Hub, app_client: TestClient) -> None:
    big = "x" * (hub.settings.max_body_bytes + 10)
    r = app_client.post(CHAT, json={"model": "echo", "messages": [{"role": "user", "content": big}]})
    _error(r, 413, "payload_too_large")


def test_unknown_route_is_404_in_same_shape(app_client: TestClient) -> None:
    _error(app_client.get("/v1/nothing-here"), 404)


def test_method_not_allowed(app_client: TestClient) -> None:
    _error(app_client.get(CHAT), 405)


def test_no_backend_available_is_503(hub: Hub, app_client: TestClient, fake_plugin) -> None:
    # Both backends of `down` fail before the first byte: 503 after the single retry.
    add_fake_backend(hub, "d1", ["down"], fail=True)
    add_fake_backend(hub, "d2", ["down"], fail=True)
    from sovhub.app import create_app

    with TestClient(create_app(hub), headers=dict(app_client.headers)) as client:
        err = _error(client.post(CHAT, json={"model": "down", "messages": MSG}), 503, "backend_unavailable")
        assert "down" in err["message"]
    assert fake_plugin.instances["d1"].calls == 1 and fake_plugin.instances["d2"].calls == 1


def test_retry_goes_to_next_healthy_backend(hub: Hub, app_client: TestClient, fake_plugin) -> None:
    add_fake_backend(hub, "bad", ["dup"], fail=True)
    add_fake_backend(hub, "good", ["dup"])
    from sovhub.app import create_app

    with TestClient(create_app(hub), headers=dict(app_client.headers)) as client:
        r = client.post(CHAT, json={"model": "dup", "messages": [{"role": "user", "content": "ok then"}]})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "ok then"
        # The failed backend is now cooling down: the next request goes straight to the good one.
        client.post(CHAT, json={"model": "dup", "messages": MSG})
    assert fake_plugin.instances["bad"].calls == 1
    assert fake_plugin.instances["good"].calls == 2


def test_unexpected_exception_is_500_without_traceback(hub: Hub, app_client: TestClient) -> None:
    class Boom:
        name = "boom"

        async def before(self, ctx):
            raise RuntimeError("secret internals")

    hub.interceptors[:] = [Boom()]
    r = TestClient(app_client.app, raise_server_exceptions=False, headers=dict(app_client.headers)).post(
        CHAT, json={"model": "echo", "messages": MSG}
    )
    err = _error(r, 500)
    assert "secret internals" not in r.text and r.headers["x-request-id"] in err["message"]
