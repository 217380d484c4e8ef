"""Two `sovhub serve` replicas sharing PostgreSQL and Redis: a key with rpm 10 gets exactly 10 answers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from sovhub.accounts import create_key, create_org
from sovhub.backends.catalog import add_backend
from sovhub.hub import build_hub
from tests.conftest import _drop_schema, _pg_schema_url, make_settings, need_service, postgres_url

from .conftest import redis_url
from .oidc_provider import free_port

pytestmark = [pytest.mark.slow, pytest.mark.services]


class _Upstream(BaseHTTPRequestHandler):
    """A tiny OpenAI-compatible server: one model, answers "ok" as a stream with usage."""

    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = json.dumps({"object": "list", "data": [{"id": "tiny", "object": "model", "owned_by": "test"}]})
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length", 0)))
        chunks = [
            {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "tiny",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "ok"}, "finish_reason": None}]},
            {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "tiny",
             "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "tiny", "choices": [],
             "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}},
        ]
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture
def shared_services() -> Iterator[tuple[str, str]]:
    base = postgres_url()
    if not base:
        need_service("PostgreSQL not configured: set SOVHUB_TEST_DATABASE_URL")
    assert base is not None
    redis = redis_url()
    try:
        url, schema = _pg_schema_url(base)
    except Exception as exc:  # noqa: BLE001 - any connection failure means the service is missing
        need_service(f"PostgreSQL at {base} not reachable: {exc}")
        raise
    yield url, redis
    _drop_schema(base, schema)


def _wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"replica exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"replica at {base} not ready in 180 s:\n{log.read_text()[-3000:]}")


def test_rpm_is_exact_across_two_replicas(tmp_path: Path, upstream: str, shared_services: tuple[str, str]) -> None:
    database_url, redis = shared_services
    setup = build_hub(make_settings(tmp_path / "setup", database_url=database_url))
    setup.pm.hook.sovhub_init(hub=setup)
    create_org(setup, "acme")
    secret = create_key(setup, "acme", limits={"rpm": 10}).secret
    add_backend(setup, "tiny-upstream", url=upstream, models=["tiny"])
    setup.close()
    # Replicas share their configuration and keys (as from one config volume), not just the database.
    for i in range(2):
        shutil.copytree(tmp_path / "setup", tmp_path / f"replica{i}")

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SOVHUB_")},
        "SOVHUB_DATABASE_URL": database_url,
        "SOVHUB_EMBEDDED_ENABLED": "false",
        "SOVHUB_EMBEDDINGS_ENABLED": "false",
        # Other areas' start-up work (safety classifier training) is not what this test measures.
        "SOVHUB_SAFETY__ENABLED": "false",
        "SOVHUB_ACCESS__REDIS_URL": redis,
        "SOVHUB_ACCESS__REDIS_PREFIX": f"sovhub-test:{uuid.uuid4().hex[:10]}:",
    }
    replicas: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    try:
        for i in range(2):
            port = free_port()
            log = tmp_path / f"replica{i}.log"
            proc = subprocess.Popen(
                [sys.executable, "-m", "sovhub", "--data-dir", str(tmp_path / f"replica{i}"), "serve",
                 "--port", str(port)],
                env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
            )
            replicas.append((f"http://127.0.0.1:{port}", proc, log))
        for base, proc, log in replicas:
            _wait_ready(base, proc, log)

        def one(i: int) -> int:
            base = replicas[i % 2][0]
            r = httpx.post(base + "/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                           json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
            assert r.status_code in (200, 429), r.text
            return r.status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            codes = list(pool.map(one, range(30)))
        assert codes.count(200) == 10, codes
        assert codes.count(429) == 20
        served = {replicas[i % 2][0] for i, c in enumerate(codes) if c == 200}
        assert len(served) == 2, "both replicas should have answered some requests"
    finally:
        for _, proc, _ in replicas:
            proc.terminate()
        for _, proc, _ in replicas:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
