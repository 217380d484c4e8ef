"""Open-loop HTTP load generator: a fixed request rate, latency measured from the intended send time.

Open loop means requests leave on a schedule (`rate` per second) whether or not earlier ones
came back, so a slow server shows up as growing latency and errors instead of a politely reduced
offered load (no coordinated omission, as in wrk2). Latency runs from the moment a request was
*due* to the last byte of its response, so time spent waiting for a free connection counts
(`p50_ms`, `p99_ms`); `svc_*` run from the moment the request was written to the socket, which
leaves out the generator's own timer lateness (uvloop timers tick in milliseconds).

It is a raw asyncio client (httptools' response parser, keep-alive connections, uvloop when
installed) because a Python HTTP client library would saturate a core before the servers do.
It runs as its own process: `python bench/loadgen.py --url http://127.0.0.1:8080/v1/chat/completions
--rate 500 --duration 10 --warmup 2 [--stream] [--key sk-...]` prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools
from mock_upstream import run_fast

__all__ = ["LoadResult", "chat_request", "percentile", "run_closed", "run_load"]

PROMPT = "Say hello in three words."
DISTINCT_PROMPT = "Message {n}: could you summarise the main points of the new public transport plan for our city?"


def chat_request(host: str, port: int, path: str, model: str, key: str | None, stream: bool,
                 prompt: str = PROMPT) -> bytes:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 16}
    if stream:
        body["stream"] = True
    raw = json.dumps(body, separators=(",", ":")).encode()
    headers = [
        f"POST {path} HTTP/1.1",
        f"host: {host}:{port}",
        "content-type: application/json",
        "accept: */*",
        f"content-length: {len(raw)}",
    ]
    if key:
        headers.append(f"authorization: Bearer {key}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + raw


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[float] | None = None
        self.closed = False
        self.status = 0
        self.sent_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(exc)
            assert self.transport is not None
            self.transport.close()

    def on_message_complete(self) -> None:
        # Stamp the last byte here, not when the awaiting task resumes: the event loop's own
        # scheduling delay belongs to the load generator, not to the server under test.
        self.status = self.parser.get_status_code()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(time.perf_counter())

    def request(self, raw: bytes) -> asyncio.Future[float]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.sent_at = time.perf_counter()
        self.transport.write(raw)
        return self.waiter


@dataclass
class LoadResult:
    rate: float
    duration_s: float
    warmup_s: float
    sent: int = 0
    ok: int = 0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    service_ms: list[float] = field(default_factory=list)
    achieved_rps: float = 0.0
    max_connections: int = 0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        svc = sorted(self.service_ms)
        return {
            "rate": self.rate, "duration_s": self.duration_s, "warmup_s": self.warmup_s,
            "sent": self.sent, "ok": self.ok, "errors": self.errors, "statuses": self.statuses,
            "error_rate": self.errors / self.sent if self.sent else 0.0,
            "achieved_rps": round(self.achieved_rps, 1), "max_connections": self.max_connections,
            "p50_ms": round(percentile(lat, 50), 3), "p90_ms": round(percentile(lat, 90), 3),
            "p95_ms": round(percentile(lat, 95), 3),
            "p99_ms": round(percentile(lat, 99), 3), "max_ms": round(lat[-1], 3) if lat else math.nan,
            "mean_ms": round(sum(lat) / len(lat), 3) if lat else math.nan,
            "svc_p50_ms": round(percentile(svc, 50), 3), "svc_p90_ms": round(percentile(svc, 90), 3),
            "svc_p95_ms": round(percentile(svc, 95), 3),
            "svc_p99_ms": round(percentile(svc, 99), 3),
        }


async def run_load(
    url: str, raw: bytes | list[bytes], rate: float, duration: float, warmup: float, *, timeout: float = 10.0,
    max_conns: int = 2000,
) -> LoadResult:
    """Send ``raw`` at ``rate``; a list of requests is sent in turn (``--distinct``)."""
    raws = raw if isinstance(raw, list) else [raw]
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    idle: deque[_Conn] = deque()
    waiting: deque[asyncio.Future[_Conn]] = deque()
    opened = 0
    result = LoadResult(rate=rate, duration_s=duration, warmup_s=warmup)
    done_in_window = 0

    async def acquire() -> _Conn:
        nonlocal opened
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
            opened -= 1
        if opened < max_conns:
            opened += 1
            result.max_connections = max(result.max_connections, opened)
            try:
                _, conn = await loop.create_connection(_Conn, host, port)
            except OSError:
                opened -= 1
                raise
            return conn
        fut: asyncio.Future[_Conn] = loop.create_future()
        waiting.append(fut)
        return await fut

    def release(conn: _Conn) -> None:
        nonlocal opened
        if conn.closed:
            opened -= 1
            return
        while waiting:
            fut = waiting.popleft()
            if not fut.done():
                fut.set_result(conn)
                return
        idle.append(conn)

    measured_from = 0.0

    async def one(due: float, raw: bytes) -> None:
        nonlocal done_in_window, opened
        counted = due >= measured_from
        status = 0
        finished = sent_at = 0.0
        conn: _Conn | None = None
        try:
            async with asyncio.timeout(timeout):
                conn = await acquire()
                finished = await conn.request(raw)
                status, sent_at = conn.status, conn.sent_at
        except (OSError, TimeoutError, httptools.HttpParserError):
            status = 0
            if conn is not None and conn.transport is not None:
                conn.transport.close()
                opened -= 1
                conn = None
        finally:
            if conn is not None:
                release(conn)
        if not counted:
            return
        latency = (finished - due) * 1000
        result.sent += 1
        key = str(status)
        result.statuses[key] = result.statuses.get(key, 0) + 1
        if status == 200:
            result.ok += 1
            result.latencies_ms.append(latency)
            result.service_ms.append((finished - sent_at) * 1000)
        else:
            result.errors += 1

    # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds.
    clock = time.perf_counter
    total = int(rate * (warmup + duration))
    start = clock() + 0.05
    measured_from = start + warmup
    tasks: set[asyncio.Task[None]] = set()
    issued = 0
    while issued < total:
        now = clock()
        due_count = min(total, int((now - start) * rate) + 1)
        while issued < due_count:
            task = loop.create_task(one(start + issued / rate, raws[issued % len(raws)]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            issued += 1
        next_due = start + issued / rate
        await asyncio.sleep(max(0.0, next_due - clock()))
    if tasks:
        await asyncio.wait(set(tasks))
    elapsed_window = clock() - measured_from
    result.achieved_rps = result.ok / elapsed_window if elapsed_window > 0 else 0.0
    for conn in idle:
        if conn.transport is not None:
            conn.transport.close()
    return result


async def run_closed(url: str, raw: bytes, concurrency: int, duration: float, warmup: float, *,
                     timeout: float = 10.0) -> LoadResult:
    """Closed loop: `concurrency` connections, each sending its next request as soon as the last came back.

    What a server sustains flat out (as wrk measures), without the open loop's collapse: offered far more
    than it can take, an open loop's queue grows until every request times out and almost none is served.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    clock = time.perf_counter
    result = LoadResult(rate=0.0, duration_s=duration, warmup_s=warmup)
    start = clock()
    measured_from, end = start + warmup, start + warmup + duration

    async def worker() -> None:
        conn: _Conn | None = None
        while clock() < end:
            began = clock()
            status = 0
            try:
                async with asyncio.timeout(timeout):
                    if conn is None or conn.closed:
                        _, conn = await loop.create_connection(_Conn, host, port)
                    finished = await conn.request(raw)
                    status = conn.status
            except (OSError, TimeoutError, httptools.HttpParserError):
                if conn is not None and conn.transport is not None:
                    conn.transport.close()
                conn = None
                finished = clock()
            if began < measured_from or finished > end:
                continue
            result.sent += 1
            result.statuses[str(status)] = result.statuses.get(str(status), 0) + 1
            if status == 200:
                result.ok += 1
                result.latencies_ms.append((finished - began) * 1000)
            else:
                result.errors += 1
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.achieved_rps = result.ok / duration
    result.max_connections = concurrency
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="open-loop load generator (loopback only)")
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", default="mock-model")
    parser.add_argument("--key")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--rate", type=float, default=0.0, help="open loop: requests per second")
    parser.add_argument("--concurrency", type=int, default=0,
                        help="closed loop instead: this many connections, each as fast as answers come back")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--distinct", type=int, default=0, metavar="N",
                        help="send N different messages in turn (a guard's per-text cache then answers none "
                             "of them while N exceeds its size) instead of one message every time")
    args = parser.parse_args()
    parts = urlsplit(args.url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("loopback targets only")
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    raw: bytes | list[bytes] = chat_request(host, port, parts.path, args.model, args.key, args.stream)
    if args.distinct > 0:
        raw = [chat_request(host, port, parts.path, args.model, args.key, args.stream,
                            DISTINCT_PROMPT.format(n=n)) for n in range(args.distinct)]
    t0 = time.perf_counter()
    if args.concurrency > 0:
        single = raw[0] if isinstance(raw, list) else raw
        result = run_fast(run_closed(args.url, single, args.concurrency, args.duration, args.warmup,
                                     timeout=args.timeout))
    elif args.rate > 0:
        result = run_fast(run_load(args.url, raw, args.rate, args.duration, args.warmup, timeout=args.timeout))
    else:
        parser.error("give --rate (open loop) or --concurrency (closed loop)")
    summary = result.summary()
    summary["wall_s"] = round(time.perf_counter() - t0, 2)
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
