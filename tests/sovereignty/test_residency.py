"""Residency: only backends in allowed jurisdictions serve; a refused request sends zero bytes abroad."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sovhub.backends.base import BackendConfig
from sovhub.cli import main
from sovhub.errors import ConfigError, ResidencyViolation
from sovhub.hub import Hub
from sovhub.sovereignty.residency import ResidencyPolicy, is_compliant
from sovhub.sovereignty.tables import AuditEntry
from tests.conftest import add_fake_backend, make_settings
from tests.fakes import EchoBackend, FakePlugin

from .conftest import new_hub


class CountingUpstream:
    """A raw TCP server on loopback that counts connections and bytes received (and answers nothing)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.bytes = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.settimeout(0.5)
            try:
                while chunk := conn.recv(65536):
                    self.bytes += len(chunk)
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


def _backend(name: str, jurisdiction: str | None) -> EchoBackend:
    return EchoBackend(BackendConfig(name=name, kind="fake", models=["m"], jurisdiction=jurisdiction))


def test_unknown_jurisdiction_codes_are_refused_at_start(data_dir: Path) -> None:
    with pytest.raises(ConfigError, match="XX"):
        make_settings(data_dir, sovereignty={"jurisdiction": "UA", "allowed_jurisdictions": ["UA", "XX"]})
    with pytest.raises(ConfigError, match="unknown jurisdiction 'ZZ'"):
        make_settings(data_dir, sovereignty={"jurisdiction": "ZZ"})
    ok = make_settings(data_dir, sovereignty={"jurisdiction": "ua", "allowed_jurisdictions": ["pl", "eu"]})
    assert ok.sovereignty.jurisdiction == "UA" and ok.sovereignty.allowed_jurisdictions == ["PL", "EU"]


def test_eu_admits_member_states_but_not_the_reverse() -> None:
    assert is_compliant("DE", frozenset({"EU"}))
    assert not is_compliant("US", frozenset({"EU"}))
    assert not is_compliant("EU", frozenset({"DE"}))
    assert not is_compliant(None, frozenset({"DE"}))


def test_policy_keeps_home_only_by_default_and_refuses_naming_model(shub: Hub) -> None:
    policy = ResidencyPolicy(shub)  # home EU by default, nothing else allowed
    home, abroad = _backend("home", "EU"), _backend("abroad", "US")
    assert policy.filter(None, "m", [abroad, home]) == [home]
    with pytest.raises(ResidencyViolation) as info:
        policy.filter(None, "m", [abroad])
    assert info.value.status == 403 and info.value.code == "residency_violation"
    assert "model m" in info.value.message and "(EU)" in info.value.message
    with shub.db.session() as s:
        events = list(s.scalars(select(AuditEntry.event)))
    assert "residency.refused" in events


def test_model_served_only_abroad_sends_zero_bytes(data_dir: Path, database_url: str | None) -> None:
    from sovhub.accounts import create_key, create_org
    from sovhub.app import create_app
    from sovhub.backends.catalog import add_backend

    upstream = CountingUpstream()
    hub = new_hub(data_dir, database_url, sovereignty={"jurisdiction": "UA"})
    plugin = FakePlugin()
    hub.pm.register(plugin, name="tests.fake")
    try:
        create_org(hub, "acme")
        secret = create_key(hub, "acme").secret
        add_fake_backend(hub, "home", ["echo"], jurisdiction="UA")
        add_backend(hub, "abroad", url=f"http://127.0.0.1:{upstream.port}/v1", models=["abroad-model"],
                    jurisdiction="US", operator="Foreign Cloud Inc.")
        with TestClient(create_app(hub), headers={"authorization": f"Bearer {secret}"}) as client:
            for stream in (False, True):
                r = client.post("/v1/chat/completions", json={
                    "model": "abroad-model", "stream": stream, "messages": [{"role": "user", "content": "secret"}]})
                assert r.status_code == 403, r.text
                err = r.json()["error"]
                assert err["code"] == "residency_violation"
                assert "abroad-model" in err["message"] and "UA" in err["message"]
            assert client.post("/v1/chat/completions", json={
                "model": "echo", "messages": [{"role": "user", "content": "hi"}]}).status_code == 200
            report = client.get("/hub/v1/transparency").json()["sections"]["sovereignty"]
            assert report["residency_refusals"] == 2
    finally:
        hub.pm.unregister(name="tests.fake")
        hub.close()
        upstream.close()
    assert upstream.connections == 0 and upstream.bytes == 0


def test_adding_noncompliant_backend_warns_and_is_audited(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def run(*args: str) -> int:
        try:
            main(["--data-dir", str(data_dir), *args])
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0

    assert run("init", "--jurisdiction", "UA") == 0
    capsys.readouterr()
    assert run("backends", "add", "us1", "--url", "http://gpu.example.com/v1", "--model", "x",
               "--jurisdiction", "US", "--operator", "Foreign Cloud") == 0
    err = capsys.readouterr().err
    assert "backend us1 is in jurisdiction US" in err and "(UA)" in err
    assert run("backends", "add", "ua1", "--url", "http://gpu.local/v1", "--model", "y", "--jurisdiction", "UA") == 0
    assert "warning" not in capsys.readouterr().err
    assert run("backends", "add", "bad", "--url", "http://x/v1", "--jurisdiction", "QQ") == 1
    assert "unknown jurisdiction 'QQ'" in capsys.readouterr().err
    assert run("residency", "show") == 0
    out = capsys.readouterr().out
    assert "us1\tUS\tForeign Cloud\tNOT COMPLIANT" in out and "ua1\tUA" in out and "\tcompliant" in out
    assert run("audit", "show", "--last", "50") == 0
    log = capsys.readouterr().out
    assert "backend.noncompliant\tbackend:us1" in log and "backend.added\tbackend:ua1" in log
