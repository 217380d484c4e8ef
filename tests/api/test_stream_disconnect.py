"""A client that disconnects mid-stream stops its generation (real server, real socket)."""

from __future__ import annotations

import time

import httpx

from sovhub.app import create_app
from sovhub.hub import Hub
from tests.conftest import add_fake_backend
from tests.server import ThreadedServer


def test_disconnect_stops_generation(hub: Hub, fake_plugin, api_key: str) -> None:
    add_fake_backend(hub, "slow", ["slow"], delay=0.02)
    with ThreadedServer(create_app(hub)) as server:
        port = server.port
        words = " ".join(f"w{i}" for i in range(500))
        with httpx.stream(
            "POST", f"http://127.0.0.1:{port}/v1/chat/completions", headers={"authorization": f"Bearer {api_key}"},
            json={"model": "slow", "stream": True, "messages": [{"role": "user", "content": words}]}, timeout=30,
        ) as r:
            got = 0
            for line in r.iter_lines():
                got += line.startswith("data: {")
                if got >= 3:
                    break
        time.sleep(1.0)  # 50 more words would be produced in this time if generation went on
        backend = fake_plugin.instances["slow"]
        produced = backend.yielded
        time.sleep(0.5)
        assert backend.yielded == produced, "generation went on after the client left"
        assert produced < 100
