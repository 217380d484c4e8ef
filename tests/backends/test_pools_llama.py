"""A pool of two real model servers (`python -m llama_cpp.server` on the bundled SmolLM2): one is killed under
load, taken out within 2 s, no request fails (the retry goes to the other), and it comes back after its cooldown
once restarted."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from sovhub.app import create_app
from sovhub.backends.catalog import add_backend
from sovhub.backends.embedded import bundled_model_path
from sovhub.backends.registry import BackendRegistry
from sovhub.hub import Hub
from sovhub.store.tables import UsageRecord
from tests.server import ThreadedServer, free_port

pytestmark = [pytest.mark.slow]

COOLDOWN_S = 3.0


class LlamaServer:
    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log = port, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> LlamaServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_model_path()), "--model_alias",
             "smollm2", "--host", "127.0.0.1", "--port", str(self.port), "--n_threads", "1", "--n_ctx", "512"],
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited:\n{self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/models", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"llama_cpp.server not ready in 120 s:\n{self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[LlamaServer, LlamaServer]]:
    pytest.importorskip("sse_starlette", reason="llama-cpp-python[server] extras not installed")
    pytest.importorskip("starlette_context", reason="llama-cpp-python[server] extras not installed")
    servers = (LlamaServer(free_port(), tmp_path / "a.log"), LlamaServer(free_port(), tmp_path / "b.log"))
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.kill()


def test_a_killed_model_server_is_out_within_2s_no_request_fails_and_it_comes_back(
    hub: Hub, api_key: str, two_servers: tuple[LlamaServer, LlamaServer],
) -> None:
    a, b = two_servers
    hub.settings.backend_probe_interval_s = 0.5
    hub.settings.backend_cooldown_s = COOLDOWN_S
    add_backend(hub, "llama-a", url=a.url, models=["smollm2"])
    add_backend(hub, "llama-b", url=b.url, models=["smollm2"])
    codes: list[int] = []
    stop = threading.Event()

    def load(url: str) -> None:
        with httpx.Client(timeout=60, headers={"authorization": f"Bearer {api_key}"}) as client:
            while not stop.is_set():
                r = client.post(url + "/v1/chat/completions", json={
                    "model": "smollm2", "max_tokens": 4, "messages": [{"role": "user", "content": "Say hi"}]})
                codes.append(r.status_code)

    with ThreadedServer(create_app(hub)) as server:
        registry = hub.services.get(BackendRegistry)
        backend_b = registry.get("llama-b")
        assert backend_b is not None
        threads = [threading.Thread(target=load, args=(server.url,)) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            while len(codes) < 4 and not stop.wait(0.05):  # both servers warm
                pass
            b.kill()
            killed = time.monotonic()
            while registry.healthy(backend_b) and time.monotonic() - killed < 10:
                time.sleep(0.02)
            out_after = time.monotonic() - killed
            at_kill = len(codes)
            while len(codes) < at_kill + 4 and time.monotonic() - killed < 60:  # served by the other alone
                time.sleep(0.05)
            during_outage = len(codes) - at_kill
            b.start()
            restarted = time.monotonic()
            while not registry.healthy(backend_b) and time.monotonic() - restarted < 30:
                time.sleep(0.05)
            back_after = time.monotonic() - restarted
            back_at = time.time()
            took_one = False
            while not took_one and time.time() - back_at < 60:
                took_one = registry.outstanding.get("llama-b", 0) > 0
                time.sleep(0.01)
            time.sleep(1)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
    with hub.db.session() as s:
        rows = s.execute(select(UsageRecord.backend, UsageRecord.ts, UsageRecord.status)).all()
    served_b_after = sum(1 for backend, ts, _ in rows if backend == "llama-b" and ts.timestamp() > back_at)
    print(f"\nllama.cpp pool: {len(codes)} requests, {len(codes) - codes.count(200)} failed; llama-b out "
          f"{out_after:.2f} s after kill -9, back {back_after:.1f} s after its restart (cooldown {COOLDOWN_S:.0f} s), "
          f"then served {served_b_after}; per backend {dict((n, sum(1 for r in rows if r[0] == n)) for n in ('llama-a', 'llama-b'))}")
    assert codes and codes.count(200) == len(codes), [c for c in codes if c != 200]
    assert during_outage >= 4
    assert out_after < 2.0, out_after
    assert back_after < COOLDOWN_S + 5, back_after
    assert took_one and served_b_after > 0, "the restarted server takes requests again"
