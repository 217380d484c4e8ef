"""SIGTERM on a real `sovhub serve`: unready at once, serving on for the drain, then in-flight answers end
in-band and metered, and the process exits."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from sovhub.accounts import create_key, create_org
from sovhub.backends.catalog import add_backend
from sovhub.hub import build_hub
from tests.conftest import make_settings
from tests.server import RemoteHub
from tests.upstream_server import FakeUpstream

pytestmark = [pytest.mark.slow]

DRAIN_S = 3.0


def _stream(url: str, key: str, model: str, out: dict[str, Any]) -> None:
    events: list[Any] = []
    try:
        with httpx.stream("POST", url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                          json={"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
                          timeout=60) as r:
            out["status"] = r.status_code
            for line in r.iter_lines():
                if line.startswith("data: "):
                    data = line[6:]
                    events.append(data if data == "[DONE]" else json.loads(data))
    except httpx.HTTPError as exc:
        out["error"] = repr(exc)
    out["events"] = events


def _post(url: str, key: str, model: str, out: dict[str, Any]) -> None:
    try:
        r = httpx.post(url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                       json={"model": model, "messages": [{"role": "user", "content": "hi"}]}, timeout=60)
        out.update(status=r.status_code, body=r.json(), headers=dict(r.headers))
    except (httpx.HTTPError, ValueError) as exc:
        out["error"] = repr(exc)


def test_sigterm_drains_then_ends_what_still_runs_in_band_and_metered(tmp_path: Path) -> None:
    data_dir = tmp_path / "hub"
    # "short" streams for about 1 s, inside the drain; "long" would take 40 s, so the drain must end it.
    with FakeUpstream(["short"], delay=0.2, words=5) as short, FakeUpstream(["long"], delay=0.4, words=100) as long:
        setup = build_hub(make_settings(data_dir))
        setup.pm.hook.sovhub_init(hub=setup)
        create_org(setup, "acme")
        key = create_key(setup, "acme").secret
        add_backend(setup, "short-up", url=short.url, models=["short"])
        add_backend(setup, "long-up", url=long.url, models=["long"])
        setup.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOVHUB_")}
        env.update(SOVHUB_EMBEDDED_ENABLED="false", SOVHUB_EMBEDDINGS_ENABLED="false", SOVHUB_SAFETY__ENABLED="false",
                   SOVHUB_SERVER__DRAIN_SECONDS=str(DRAIN_S))
        hub = RemoteHub(data_dir, env=env, timeout=180).start()
        try:
            results: dict[str, dict[str, Any]] = {n: {} for n in ("short", "long", "long_plain", "during")}
            threads = [
                threading.Thread(target=_stream, args=(hub.url, key, "short", results["short"])),
                threading.Thread(target=_stream, args=(hub.url, key, "long", results["long"])),
                threading.Thread(target=_post, args=(hub.url, key, "long", results["long_plain"])),
            ]
            for t in threads:
                t.start()
            time.sleep(0.6)  # all three are in flight
            assert hub.proc is not None
            signalled = time.perf_counter()
            hub.proc.send_signal(signal.SIGTERM)
            ready = httpx.get(hub.url + "/readyz", timeout=2)
            unready_after = time.perf_counter() - signalled
            assert ready.status_code == 503 and ready.json() == {"status": "draining"}
            assert unready_after < 1.0, unready_after  # one loopback request on a busy machine
            # The listener stays open during the drain: a request the load balancer still sends is served.
            _post(hub.url, key, "short", results["during"])
            assert results["during"]["status"] == 200, results["during"]
            for t in threads:
                t.join(30)
            code = hub.proc.wait(30)
            exited_after = time.perf_counter() - signalled
        finally:
            hub.stop()
    print(f"\nSIGTERM: /readyz 503 after {unready_after * 1000:.0f} ms, exit after {exited_after:.1f} s "
          f"(drain {DRAIN_S:.0f} s), exit code {code}")
    assert DRAIN_S <= exited_after < DRAIN_S + 4

    finished = results["short"]["events"]
    assert finished[-1] == "[DONE]" and not any("error" in e for e in finished[:-1])
    cut = results["long"]["events"]
    assert results["long"]["status"] == 200 and "error" not in results["long"]
    assert cut[-1] == "[DONE]", cut[-3:]
    assert cut[-2]["error"]["code"] == "shutting_down", cut[-3:]
    assert any(e.get("choices") for e in cut[:-2]), "the cut stream had sent part of its answer"
    plain = results["long_plain"]
    assert plain.get("status") == 503, plain
    assert plain["body"]["error"]["code"] == "shutting_down" and plain["headers"]["retry-after"] == "1"

    engine = create_engine(f"sqlite:///{data_dir / 'sovhub.db'}")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT model, status FROM usage_records ORDER BY id")).all()
    engine.dispose()
    assert sorted(rows) == [("long", 503), ("long", 503), ("short", 200), ("short", 200)], rows
