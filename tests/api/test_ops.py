from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sovhub.hub import Hub


def test_healthz_and_readyz(app_client: TestClient) -> None:
    assert app_client.get("/healthz").json() == {"status": "ok"}
    ready = app_client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] is True and ready.json()["backends"] == {"fake1": True}


def test_readyz_is_503_when_database_is_gone(app_client: TestClient, hub: Hub, monkeypatch) -> None:
    monkeypatch.setattr(hub.db, "ping", lambda: False)
    r = app_client.get("/readyz")
    assert r.status_code == 503 and r.json()["status"] == "not_ready"


def _metrics_auth(hub: Hub) -> dict[str, str]:
    return {"authorization": f"Bearer {hub.settings.resolved_metrics_token}"}


def test_metrics_count_requests_tokens_and_overhead(app_client: TestClient, hub: Hub) -> None:
    app_client.post("/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": "a b"}]})
    text = app_client.get("/metrics", headers=_metrics_auth(hub)).text
    assert 'sovhub_requests_total{method="POST",route="/v1/chat/completions",status="200"} 1.0' in text
    assert 'sovhub_tokens_total{kind="completion",model="echo"} 2.0' in text
    assert "sovhub_gateway_overhead_seconds_bucket" in text
    assert "sovhub_time_to_first_token_seconds_count" in text


def test_request_id_is_echoed_when_sane(app_client: TestClient) -> None:
    assert app_client.get("/v1/models", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
    assert app_client.get("/v1/models", headers={"x-request-id": "bad id\n"}).headers["x-request-id"] != "bad id"


def test_json_logs_carry_request_id(hub: Hub, fake_plugin, api_key: str, capsys) -> None:
    """A line logged while a request is handled carries its id; a line logged outside carries none."""
    import json
    import logging

    from sovhub.app import create_app
    from sovhub.observability import configure_logging
    from tests.conftest import add_fake_backend

    add_fake_backend(hub, "down", ["broken"], fail=True)
    configure_logging("info")
    try:
        with TestClient(create_app(hub), headers={"authorization": f"Bearer {api_key}"}) as client:
            failed = client.post(
                "/v1/chat/completions", json={"model": "broken", "messages": [{"role": "user", "content": "x"}]},
                headers={"x-request-id": "rid-log-1"},
            )
        logging.getLogger("sovhub.test").info("marker")
    finally:
        logging.getLogger("sovhub").handlers.clear()
    assert failed.status_code == 503
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    during = [line for line in lines if line["msg"].startswith("request failed")]
    assert during, lines
    assert all(line.get("request_id") == "rid-log-1" for line in during)
    assert any(line["msg"] == "marker" and "request_id" not in line for line in lines)


def test_start_up_freezes_its_objects_and_relaxes_the_collector(app_client: TestClient) -> None:
    import gc

    from sovhub.app import GC_THRESHOLDS

    assert app_client.get("/readyz").status_code == 200
    # Start-up objects are out of the collector's reach; requests' objects are collected less often.
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == GC_THRESHOLDS


def test_metrics_refuse_anyone_without_the_metrics_token(app_client: TestClient, hub: Hub) -> None:
    anonymous = app_client.get("/metrics", headers={"authorization": ""})
    assert anonymous.status_code == 401 and "sovhub_requests_total" not in anonymous.text
    assert anonymous.json()["error"]["code"] == "invalid_metrics_token"
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    # An organization's API key (the client's default header) is not the metrics token.
    assert app_client.get("/metrics").status_code == 401
    token = hub.settings.resolved_metrics_token
    wrong = token[:-1] + ("y" if token.endswith("x") else "x")  # one character off (never the token itself)
    assert wrong != token
    assert app_client.get("/metrics", headers={"authorization": f"Bearer {wrong}"}).status_code == 401
    assert app_client.get("/metrics", headers={"authorization": f"Basic {wrong}"}).status_code == 401
    assert app_client.get("/metrics", headers=_metrics_auth(hub)).status_code == 200


def test_metrics_token_is_written_once_per_data_dir_and_kept_private(hub: Hub) -> None:
    from sovhub.settings import load_settings

    path = hub.settings.data_dir / "metrics_token"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text().strip() == hub.settings.resolved_metrics_token
    assert hub.settings.resolved_metrics_token != hub.settings.signing_key
    assert load_settings(data_dir=str(hub.settings.data_dir)).resolved_metrics_token == path.read_text().strip()


def test_a_configured_metrics_token_is_used_and_a_weak_one_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from sovhub.errors import ConfigError
    from sovhub.settings import load_settings

    token = "m3tr1cs-" + "Qx7vLp2Zk9" * 4
    assert load_settings(data_dir=str(tmp_path), metrics_token=token).resolved_metrics_token == token
    assert not (tmp_path / "metrics_token").exists()
    with pytest.raises(ConfigError, match="metrics_token is shorter than 32"):
        load_settings(data_dir=str(tmp_path), metrics_token="prometheus")


def test_metrics_can_move_to_their_own_port(data_dir: Path) -> None:
    """With metrics_port, the public app has no /metrics (token or not); the metrics port serves it, token checked."""
    import httpx

    from sovhub.accounts import create_key, create_org
    from sovhub.app import create_app
    from sovhub.hub import build_hub
    from tests.conftest import add_fake_backend, make_settings
    from tests.fakes import FakePlugin

    hub = build_hub(make_settings(data_dir, metrics_port=0))
    hub.pm.register(FakePlugin(), name="tests.fake")
    try:
        create_org(hub, "acme")
        key = create_key(hub, "acme").secret
        add_fake_backend(hub, "fake1", ["echo"])
        app = create_app(hub)
        with TestClient(app, headers={"authorization": f"Bearer {key}"}) as client:
            chat = client.post("/v1/chat/completions", json={"model": "echo", "messages": [
                {"role": "user", "content": "a b"}]})
            assert chat.status_code == 200
            public = client.get("/metrics", headers=_metrics_auth(hub))
            unknown = client.get("/no-such-page", headers=_metrics_auth(hub))
            assert public.status_code == 404 and "sovhub_requests_total" not in public.text
            # Nothing tells the public port's /metrics from any page that does not exist.
            assert public.json()["error"]["code"] == unknown.json()["error"]["code"] == "not_found"
            url = f"http://127.0.0.1:{app.state.metrics_listener.port}"
            anonymous = httpx.get(f"{url}/metrics", timeout=5)
            assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "invalid_metrics_token"
            assert anonymous.headers["www-authenticate"].startswith("Bearer")
            assert httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {key}"}, timeout=5).status_code == 401
            scraped = httpx.get(f"{url}/metrics", headers=_metrics_auth(hub), timeout=5)
            assert scraped.status_code == 200
            assert 'sovhub_requests_total{method="POST",route="/v1/chat/completions",status="200"} 1.0' in scraped.text
            assert httpx.get(f"{url}/v1/models", headers=_metrics_auth(hub), timeout=5).status_code == 404
        # Closed with the app.
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/metrics", timeout=2)
    finally:
        hub.close()


def test_a_metrics_port_in_use_stops_the_start_with_a_clear_error(data_dir: Path) -> None:
    import socket

    from sovhub.app import create_app
    from sovhub.errors import ConfigError
    from sovhub.hub import build_hub
    from tests.conftest import make_settings

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        hub = build_hub(make_settings(data_dir, metrics_port=taken.getsockname()[1]))
        try:
            with pytest.raises(ConfigError, match="metrics_port: cannot listen on 127.0.0.1"), \
                    TestClient(create_app(hub)):
                pass
        finally:
            hub.close()
