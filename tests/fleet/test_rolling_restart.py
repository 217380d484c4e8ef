"""A rolling restart of every replica behind HAProxy under 100 requests per second fails no request.

Each replica in turn gets SIGTERM: its /readyz answers 503 at once, HAProxy takes it out after two failed
checks, the requests and streams it still holds finish inside the drain, it exits, and the new process on the
same port is taken back once ready; only then is the next one restarted (Kubernetes' ``maxUnavailable: 0``).
HAProxy never retries (tests/fleet/balancer.py), so any request lost on the way would reach the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.server import RemoteHub, run_cli
from tests.upstream_server import FakeUpstream

from .balancer import HAProxy
from .conftest import Fleet

pytestmark = [pytest.mark.slow, pytest.mark.services]

RATE = 100.0
#: The drain: long enough for HAProxy's three failed checks (250 ms apart) on a machine shared with other work.
DRAIN_S = 5.0
#: One request in this many is streamed (the rest are plain completions).
STREAM_EVERY = 5


@dataclass
class Load:
    """An open-loop load at `rate`: a request is due every 1/rate s whether or not the last came back.

    It runs in a process of its own: in this one the fake upstream's threads would compete with it for the GIL.
    """

    url: str
    key: str
    rate: float
    sent: int = 0
    answered: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    started_at: float = 0.0
    stopped_at: float = 0.0

    def start(self) -> Load:
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._results: multiprocessing.Queue[dict[str, Any]] = ctx.Queue()
        self._process = ctx.Process(target=_load_process, args=(self.url, self.key, self.rate, self._stop,
                                                                 self._results), name="load")
        self._process.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        results = self._results.get(timeout=90)
        self._process.join(30)
        for name, value in results.items():
            setattr(self, name, value)

    @property
    def offered_rps(self) -> float:
        return self.sent / max(1e-9, self.stopped_at - self.started_at)


def _load_process(url: str, key: str, rate: float, stop: Any, results: Any) -> None:
    load = _Running(url, key, rate, stop)
    asyncio.run(load.run())
    results.put({"sent": load.sent, "answered": load.answered, "failures": load.failures,
                 "latencies": load.latencies, "started_at": load.started_at, "stopped_at": load.stopped_at})


@dataclass
class _Running:
    url: str
    key: str
    rate: float
    stop: Any
    sent: int = 0
    answered: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    started_at: float = 0.0
    stopped_at: float = 0.0

    async def one(self, client: aiohttp.ClientSession, n: int, due: float) -> None:
        stream = n % STREAM_EVERY == 0
        body = {"model": "tiny", "max_tokens": 8, "stream": stream,
                "messages": [{"role": "user", "content": f"request {n}"}]}
        try:
            async with client.post(self.url + "/v1/chat/completions", json=body) as r:
                raw = await r.read()
                status, rid = r.status, r.headers.get("x-request-id", "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.failures.append(f"request {n}: {exc!r}")
            return
        if status != 200:
            self.failures.append(f"request {n}: {status} {raw[:200]!r}")
            return
        if stream:
            events = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
            if events[-1:] != ["[DONE]"] or any('"error"' in e for e in events):
                self.failures.append(f"stream {n} ended badly: {events[-2:]}")
                return
        self.answered.append(rid)
        self.latencies.append(time.perf_counter() - due)

    async def run(self) -> None:
        # aiohttp rather than httpx: about a third of the CPU per request, which a contended 2-core machine
        # needs to offer the full rate; and ahead of the replicas for the CPU (it is the clients, not the hub).
        with contextlib.suppress(OSError):
            os.nice(-5)
        connector = aiohttp.TCPConnector(limit=300)
        async with aiohttp.ClientSession(headers={"authorization": f"Bearer {self.key}"}, connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=30)) as client:
            tasks: set[asyncio.Task[None]] = set()
            self.started_at = start = time.perf_counter()
            while not self.stop.is_set():
                due = start + self.sent / self.rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                task = asyncio.create_task(self.one(client, self.sent, due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                self.sent += 1
            self.stopped_at = time.perf_counter()
            if tasks:
                await asyncio.wait(set(tasks), timeout=40)


def _stream_directly(url: str, key: str, out: dict[str, Any]) -> None:
    """A long stream held by the replica about to be restarted: it must end with [DONE] and no error."""
    try:
        with httpx.stream("POST", url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                          json={"model": "long", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
                          timeout=30) as r:
            out["status"] = r.status_code
            out["events"] = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    except httpx.HTTPError as exc:
        out["error"] = repr(exc)


def test_rolling_restart_under_100_rps_fails_no_request(make_fleet: object, tmp_path: Path) -> None:
    with FakeUpstream(["long"], delay=0.2, words=8) as long:  # ~1.6 s per stream, inside the drain
        fleet: Fleet = make_fleet()  # type: ignore[operator]
        run_cli(fleet.root / "setup", "backends", "add", "long-up", "--url", long.url, "--model", "long",
                env=fleet.env())
        env = {"SOVHUB_SERVER__DRAIN_SECONDS": str(DRAIN_S)}
        replicas = fleet.start(2, **env)
        # A replica carrying the whole load alone during a restart answers its checks slowly (its event loop is
        # busy, this machine has two shared cores): 5 s to answer, 3 failures to go out, as a probe's
        # timeoutSeconds and failureThreshold allow for. A draining one answers 503 at once.
        # At most 16 requests at once per replica, the rest queued in HAProxy, so that checks are not stuck
        # behind hundreds of requests in a replica's event loop.
        with HAProxy(tmp_path, [r.port for r in replicas], check_ms=250, fall=3, check_timeout_s=5.0,
                     maxconn=16) as lb:
            for i in range(len(replicas)):
                lb.wait_status(f"r{i}", "UP")
            load = Load(lb.url, fleet.key, RATE).start()
            timings: list[dict[str, float]] = []
            streams: list[dict[str, Any]] = []
            try:
                time.sleep(2.0)
                for i, old in enumerate(list(replicas)):
                    held = [{} for _ in range(2)]
                    threads = [threading.Thread(target=_stream_directly, args=(old.url, fleet.key, out))
                               for out in held]
                    for t in threads:
                        t.start()
                    time.sleep(0.3)  # both streams are under way on the replica about to go
                    assert old.proc is not None
                    t0 = time.perf_counter()
                    old.proc.send_signal(signal.SIGTERM)
                    out_after = lb.wait_status(f"r{i}", "DOWN", timeout=DRAIN_S)
                    old.proc.wait(DRAIN_S + 10)
                    exited_after = time.perf_counter() - t0
                    for t in threads:
                        t.join(10)
                    streams += held
                    new = RemoteHub(old.data_dir, env=old.env, port=old.port, timeout=180)
                    fleet.replicas.append(new)
                    new.start()
                    lb.wait_status(f"r{i}", "UP", timeout=30)
                    back_after = time.perf_counter() - t0
                    timings.append({"out_s": round(out_after, 2), "exited_s": round(exited_after, 2),
                                    "back_s": round(back_after, 1)})
                    replicas[i] = new
                time.sleep(2.0)
            finally:
                load.stop()
            stats = lb.stats()

    latencies = sorted(load.latencies)
    p99 = latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan")
    retries = {name: (row["wretr"], row["wredis"]) for name, row in stats.items()}
    print(f"\nrolling restart of 2 replicas under {load.offered_rps:.0f} RPS offered ({load.sent} requests, one in "
          f"{STREAM_EVERY} streamed): {len(load.answered)} answered, {len(load.failures)} failed; per replica "
          f"{timings} (out of HAProxy / process exited / back in, s after SIGTERM); p99 {p99 * 1000:.0f} ms; "
          f"HAProxy retries/redispatches {retries}; long streams across the drain: "
          f"{[s.get('events', ['?'])[-1] for s in streams]}")
    assert load.failures == [], load.failures[:10]
    assert load.offered_rps >= 0.9 * RATE, f"the load generator kept up: {load.offered_rps:.1f} RPS"
    assert len(load.answered) == load.sent
    assert all(r == ("0", "0") for r in retries.values()), retries
    for s in streams:
        assert s.get("status") == 200 and s["events"][-1] == "[DONE]", s
        assert not any('"error"' in e for e in s["events"]), s["events"][-3:]
        assert len([e for e in s["events"] if e != "[DONE]" and json.loads(e).get("choices")]) >= 8

    # Every answered request was metered, by whichever process answered it (the restarted ones flushed at exit).
    engine = create_engine(fleet.database_url)
    try:
        deadline = time.monotonic() + 10
        while True:
            with engine.connect() as conn:
                metered = {r[0] for r in conn.execute(text("SELECT request_id FROM usage_records"))}
            missing = set(load.answered) - metered
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        engine.dispose()
    assert not missing, f"{len(missing)} answered requests not in usage"
