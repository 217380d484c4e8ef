"""Web app fixtures: the real app over a hub with a fake backend, and people who can sign in."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sovhub.assistant.people import create_user
from sovhub.hub import Hub
from sovhub.settings import Settings
from tests.conftest import add_fake_backend, make_settings
from tests.fakes import FakePlugin

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Web:
    client: TestClient
    hub: Hub
    user_id: int
    email: str

    def csrf(self, path: str = "/") -> str:
        found = _CSRF.search(self.client.get(path).text)
        assert found, f"no CSRF token on {path}"
        return found.group(1)

    def sign_in(self, email: str | None = None, password: str = PASSWORD) -> None:
        token = self.csrf("/login")
        response = self.client.post("/login", data={"email": email or self.email, "password": password,
                                                     "csrf_token": token, "next": "/"}, follow_redirects=False)
        assert response.status_code == 303, response.text

    def ask(self, text: str, conversation: str | None = None, **extra: str) -> str:
        """Send a message through the streaming endpoint; returns the raw SSE body."""
        path = f"/c/{conversation}/messages" if conversation else "/c"
        response = self.client.post(path, data={"content": text, "csrf_token": self.csrf(), **extra},
                                    headers={"accept": "text/event-stream"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/event-stream")
        return response.text


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    # The safety pipeline's warm-up embeds its exemplars (minutes on a shared CPU); the web tests
    # are about the web app, and the safety area tests its own pipeline. Blocks are simulated with
    # a registered interceptor raising the safety area's error class where a test needs one.
    return make_settings(data_dir, safety={"enabled": False}, embeddings_enabled=False)


@pytest.fixture
def web(hub: Hub, fake_plugin: FakePlugin) -> Iterator[Web]:
    """A signed-out browser on the real app; the fake backend serves model `echo`; one account exists."""
    from sovhub.app import create_app

    add_fake_backend(hub, "fake1", ["echo"])
    user_id = create_user(hub, "ada@example.org", PASSWORD, display_name="Ada")
    with TestClient(create_app(hub), base_url="http://testserver") as client:
        yield Web(client, hub, user_id, "ada@example.org")


@pytest.fixture
def signed_in(web: Web) -> Web:
    web.sign_in()
    return web


def sse_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    """The web app's server-sent events as (name, data) pairs."""
    out = []
    for block in body.strip().split("\n\n"):
        name = re.search(r"^event: (.+)$", block, re.M)
        data = re.search(r"^data: (.+)$", block, re.M)
        assert name and data, block
        out.append((name.group(1), json.loads(data.group(1))))
    return out
