"""The backend catalog applied while the hub serves: another process's change, a request in flight."""

from __future__ import annotations

import threading
import time

from fastapi.testclient import TestClient

from sovhub.backends.catalog import add_backend, edit_backend, remove_backend
from sovhub.backends.live import apply_catalog_soon
from sovhub.backends.registry import BackendRegistry
from sovhub.hub import Hub
from tests.conftest import add_fake_backend
from tests.fakes import FakePlugin
from tests.upstream_server import FakeUpstream

MSG = [{"role": "user", "content": "one two three four five six"}]


def _until(check: object, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(check) and check():
            return True
        time.sleep(0.02)
    return False


def test_a_change_made_elsewhere_is_served_when_the_invalidation_arrives(
    hub: Hub, fake_plugin: FakePlugin, app_client: TestClient
) -> None:
    """What the fleet's listener does on `backend.*` (from its worker thread): reload from the table."""
    registry = hub.services.get(BackendRegistry)
    with FakeUpstream(["far-model"]) as up:
        add_backend(hub, "far", url=up.url, models=["far-model"])  # as `sovhub backends add` in another process
        assert "far-model" not in registry.model_ids()
        threading.Thread(target=apply_catalog_soon, args=(hub,)).start()
        assert _until(lambda: "far-model" in registry.model_ids())
        r = app_client.post("/v1/chat/completions", json={"model": "far-model", "messages": MSG})
        assert r.status_code == 200, r.text
        remove_backend(hub, "far")
        apply_catalog_soon(hub)
        assert _until(lambda: "far-model" not in registry.model_ids())


def test_a_replaced_backend_finishes_the_answer_it_was_streaming(
    hub: Hub, fake_plugin: FakePlugin, app_client: TestClient
) -> None:
    add_fake_backend(hub, "slow", ["slow-model"], delay=0.05)
    registry = hub.services.get(BackendRegistry)
    apply_catalog_soon(hub)
    assert _until(lambda: "slow-model" in registry.model_ids())
    old = registry.get("slow")
    result: dict[str, object] = {}

    def ask() -> None:
        r = app_client.post("/v1/chat/completions", json={"model": "slow-model", "messages": MSG})
        result["status"], result["text"] = r.status_code, r.json()["choices"][0]["message"]["content"]

    asking = threading.Thread(target=ask)
    asking.start()
    assert _until(lambda: fake_plugin.instances["slow"].yielded > 0)
    edit_backend(hub, "slow", models=["slow-model", "other-model"])
    apply_catalog_soon(hub)
    assert _until(lambda: registry.get("slow") is not old)
    asking.join(30)
    # The old backend kept streaming to the end after it left rotation; then it was closed.
    assert result == {"status": 200, "text": "one two three four five six"}
    assert "other-model" in registry.model_ids()
