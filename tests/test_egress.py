"""The egress guard: both transports refuse hosts off the allowlist, before connecting, and say so."""

from __future__ import annotations

import asyncio

import pytest

from sovhub.egress import make_backend_session, make_guard, make_http_client
from sovhub.errors import EgressRefused
from sovhub.hookspecs import hookimpl
from sovhub.hub import Hub
from tests.upstream_server import FakeUpstream


class Recorder:
    def __init__(self) -> None:
        self.events: list = []

    @hookimpl
    def sovhub_event(self, hub, event) -> None:
        self.events.append(event)

    @hookimpl
    def sovhub_egress_hosts(self, hub) -> list[str]:
        return ["idp.example.gov"]


@pytest.fixture
def recorder(hub: Hub):
    rec = Recorder()
    hub.pm.register(rec, name="tests.recorder")
    yield rec
    hub.pm.unregister(name="tests.recorder")


def test_allowlist_is_backends_plus_plugin_hosts(hub: Hub, recorder: Recorder) -> None:
    guard = make_guard(hub, ["http://gpu-1.internal:8000/v1", "https://api.ministry.example/v1"])
    assert guard.allowed == {"gpu-1.internal", "api.ministry.example", "idp.example.gov"}


def test_both_clients_refuse_and_emit_without_connecting(hub: Hub, recorder: Recorder) -> None:
    with FakeUpstream(["m"]) as up:
        guard = make_guard(hub, ["http://allowed.internal/v1"])

        async def run() -> None:
            http = make_http_client(hub, guard)
            session = make_backend_session(hub, guard)
            try:
                with pytest.raises(EgressRefused, match="127.0.0.1"):
                    await http.get(up.url + "/models")
                with pytest.raises(EgressRefused, match="not on the egress allowlist"):
                    async with session.request("GET", up.url + "/models"):
                        pass
            finally:
                await http.aclose()
                await session.close()

        asyncio.run(run())
        assert up.connections == 0
    refused = [e for e in recorder.events if e.name == "egress.refused"]
    assert len(refused) == 2 and refused[0].data["host"] == "127.0.0.1"


def test_allowed_host_goes_through(hub: Hub) -> None:
    with FakeUpstream(["m"]) as up:
        guard = make_guard(hub, [up.url])

        async def run() -> int:
            session = make_backend_session(hub, guard)
            try:
                async with session.request("GET", up.url + "/models") as resp:
                    return resp.status
            finally:
                await session.close()

        assert asyncio.run(run()) == 200
        assert up.connections == 1
