"""Property-based fuzzing of the hub's own OpenAPI schema (schemathesis): no input may produce a 5xx."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

from sovhub.app import create_app
from sovhub.hub import Hub
from tests.conftest import add_fake_backend
from tests.server import ThreadedServer


def test_no_server_errors_on_any_operation(hub: Hub, fake_plugin, api_key: str) -> None:
    add_fake_backend(hub, "fake1", ["echo"])
    app = create_app(hub)
    headers = {"authorization": f"Bearer {api_key}"}
    checked = []
    with ThreadedServer(app) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/hub/v1/openapi.json")
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.method.upper() == "DELETE":
                continue  # revoking the test's own key would only turn the rest into 401s

            @given(case=operation.as_strategy())
            @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def run(case: schemathesis.Case) -> None:
                response = case.call(base_url=server.url, headers=headers)
                assert response.status_code < 500, (
                    f"{case.method} {case.path} {case.body!r} -> {response.status_code}: {response.text[:300]}"
                )
                if response.status_code >= 400:
                    assert set(response.json()["error"]) >= {"message", "type", "param", "code"}

            run()
            checked.append(f"{operation.method.upper()} {operation.path}")
    assert "POST /v1/chat/completions" in checked and "POST /v1/embeddings" in checked
