"""Tenant isolation: organization B's key never sees A's usage, keys, verification (every /hub/v1 GET)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from sovhub.access.verification import request_verification
from sovhub.accounts import create_key, create_org
from sovhub.hub import build_hub
from sovhub.store.base import utcnow
from sovhub.store.tables import UsageRecord
from tests.conftest import add_fake_backend, make_settings
from tests.fakes import FakePlugin

from .conftest import bearer


@pytest.fixture
def full_app(data_dir: Path) -> Iterator[tuple[Any, TestClient]]:
    """The app with EVERY plugin (all areas' /hub/v1 endpoints), not just access."""
    hub = build_hub(make_settings(data_dir, safety={"enabled": False}, embeddings_enabled=False))
    hub.pm.register(FakePlugin(), name="tests.fake")
    add_fake_backend(hub, "fake1", ["echo"])
    from sovhub.app import create_app

    with TestClient(create_app(hub)) as client:
        yield hub, client
    hub.close()


def test_org_b_never_sees_org_a(full_app: tuple[Any, TestClient]) -> None:
    hub, client = full_app
    a = create_org(hub, "alpha-confidential")
    key_a = create_key(hub, "alpha-confidential", name="alpha-key-label")
    create_org(hub, "beta")
    key_b = create_key(hub, "beta")
    request_verification(hub, a.id, country="UA", registry_number="ALPHA-REG-777", legal_name="Alpha Secret LLC",
                         actor="test")
    with hub.db.session() as s:
        s.execute(insert(UsageRecord), [{
            "ts": utcnow(), "request_id": "r", "org_id": a.id, "key_id": key_a.id, "endpoint": "chat",
            "model": "alpha-private-model", "prompt_tokens": 1, "completion_tokens": 1, "latency_ms": 1.0,
            "status": 200,
        }])
    assert client.post("/v1/chat/completions", headers=bearer(key_a.secret),
                       json={"model": "echo", "messages": [{"role": "user", "content": "alpha words"}]}
                       ).status_code == 200
    secrets_of_a = ["alpha-confidential", key_a.prefix, "alpha-key-label", "ALPHA-REG-777", "Alpha Secret",
                    "alpha-private-model", "alpha words"]

    checked = []
    # Every documented GET endpoint under /hub/v1, whichever area's plugin added it.
    paths = client.get("/hub/v1/openapi.json").json()["paths"]
    for path, operations in paths.items():
        if not path.startswith("/hub/v1/") or "{" in path or "get" not in operations:
            continue
        for query in ("", "?format=csv"):
            r = client.get(path + query, headers=bearer(key_b.secret))
            assert r.status_code < 500, (path, r.text)
            leaked = [s for s in secrets_of_a if s.lower() in r.text.lower()]
            assert not leaked, f"{path}{query} leaked {leaked} to another organization"
        checked.append(path)
    assert {"/hub/v1/keys", "/hub/v1/organization/usage", "/hub/v1/organization/verification"} <= set(checked)

    # Acting on A's key by prefix from B's key is refused as if it did not exist.
    r = client.delete(f"/hub/v1/keys/{key_a.prefix}", headers=bearer(key_b.secret))
    assert r.status_code == 404
    assert client.get("/hub/v1/keys", headers=bearer(key_a.secret)).json()["data"][0]["revoked_at"] is None
    # B requesting verification creates B's request only.
    client.post("/hub/v1/organization/verification", headers=bearer(key_b.secret),
                json={"country": "UA", "registry_number": "B-1", "legal_name": "Beta"})
    own = client.get("/hub/v1/organization/verification", headers=bearer(key_a.secret)).json()
    assert own["request"]["registry_number"] == "ALPHA-REG-777"
    assert client.get("/hub/v1/organization/verification").status_code == 401
