"""Replicas benchmark: 1, 2 and 3 `sovhub serve` behind HAProxy, on one PostgreSQL and one Redis.

For each replica count it measures, at a fixed offered rate (`--rate`, open loop, bench/loadgen.py):
CPU seconds per request of the replicas (all threads, /proc), database transactions and connections
per request (its own PostgreSQL database, so other clients of the server do not count), Redis
commands per request (its own `redis-server`, started here), and p50/p99; then, flat out (a closed
loop on `--saturate` connections), the throughput it sustains, and the same through HAProxy straight to
the mock (replicas 0: the machine's ceiling with no hub). Each configuration runs `--runs` times
and the medians are reported, side by side in one run of this script:

    PYTHONPATH=$PWD/src .venv/bin/python bench/replicas_bench.py --runs 3 --saturate 32

Needs `haproxy` (Debian package; `make system-deps`), `redis-server`, and PostgreSQL at
`--database` (superuser: it creates and drops a database of its own). Everything binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from procs import (
    BENCH,
    PYTHON,
    SOVHUB,
    Proc,
    _spawn,
    _wait_ready,
    cpu_seconds,
    free_port,
    machine_info,
    start_mock,
    write_result,
)
from sqlalchemy import create_engine, text

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def _cli(data_dir: Path, env: dict[str, str], *args: str) -> str:
    out = subprocess.run([SOVHUB, "--data-dir", str(data_dir), *args], capture_output=True, text=True,
                         env={**_base_env(), **env}, check=False, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"sovhub {' '.join(args)} failed: {out.stderr.strip()[-2000:]}")
    return out.stdout


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("SOVHUB_")}


class Stack:
    """One PostgreSQL database, one redis-server, the mock upstream; replicas and HAProxy come and go."""

    def __init__(self, work: Path, admin_url: str) -> None:
        self.work = work
        self.admin_url = admin_url
        self.db = f"bench_replicas_{uuid.uuid4().hex[:8]}"
        engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.db}"'))
        engine.dispose()
        self.database_url = admin_url.rsplit("/", 1)[0] + f"/{self.db}"
        self.redis_port = free_port()
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        time.sleep(0.5)
        self.mock = start_mock(work)
        self.env = {
            "SOVHUB_DATABASE_URL": self.database_url,
            "SOVHUB_EMBEDDED_ENABLED": "false", "SOVHUB_EMBEDDINGS_ENABLED": "false",
            "SOVHUB_SAFETY__ENABLED": "false",  # the guards' cost is measured in docs/benchmarks.md's gateway part
            "SOVHUB_ACCESS__REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "SOVHUB_SERVER__DRAIN_SECONDS": "0",
            # One key store for every replica, as the chart mounts one volume in every pod.
            "SOVHUB_SOVEREIGNTY__KEY_STORE_DIR": str(work / "shared-keystore"),
        }
        self.setup = work / "setup"
        _cli(self.setup, self.env, "init")
        _cli(self.setup, self.env, "backends", "add", "mock", "--url", f"http://127.0.0.1:{self.mock.port}/v1",
             "--model", "mock-model")
        _cli(self.setup, self.env, "orgs", "create", "bench")
        # Limits far above the load, so that every request is counted in Redis as a limited key's is.
        self.key = _cli(self.setup, self.env, "keys", "create", "--org", "bench", "--rpm", "10000000", "--tpd",
                        "10000000000").strip().splitlines()[-1].strip()

    def replicas(self, n: int, env: dict[str, str] | None = None) -> list[Proc]:
        procs = []
        for i in range(n):
            data_dir = self.work / f"replica-{uuid.uuid4().hex[:6]}"
            shutil.copytree(self.setup, data_dir)
            port = free_port()
            proc = self.spawn_replica(f"sovhub-{i}", data_dir, port, env)
            procs.append(proc)
        for proc in procs:
            _wait_ready(proc, 300)
        return procs

    def spawn_replica(self, name: str, data_dir: Path, port: int, env: dict[str, str] | None = None) -> Proc:
        proc = _spawn(name, [SOVHUB, "--data-dir", str(data_dir), "serve", "--port", str(port)], port,
                      self.work, {**_base_env(), **self.env, **(env or {})})
        proc.key = self.key
        proc.extra.update(data_dir=data_dir, env=env or {})
        return proc

    def haproxy(self, replicas: list[Proc], *, ports: list[int] | None = None, health: str = "/readyz") -> Proc:
        """HAProxy in front of `replicas` (or of bare `ports`), configured as tests/fleet/balancer.py is: readiness
        checks every 250 ms (out after 3 failures, 5 s to answer), at most 16 requests at once per server (the
        rest queued in HAProxy), and no retries, so that a lost request reaches the load generator."""
        port = free_port()
        targets = ports if ports is not None else [p.port for p in replicas]
        servers = "\n".join(f"    server r{i} 127.0.0.1:{p} check inter 250ms fall 3 rise 1 maxconn 16"
                            for i, p in enumerate(targets))
        cfg = self.work / f"haproxy-{port}.cfg"
        stats = self.work / f"haproxy-{port}.sock"
        cfg.write_text(f"""global
    maxconn 4096
    stats socket {stats} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout check 5s
    timeout queue 30s
    retries 0
    option http-keep-alive
frontend hub
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance leastconn
    option httpchk GET {health}
    http-check expect status 200
    http-reuse always
{servers}
""")
        proc = _spawn("haproxy", [HAPROXY, "-db", "-f", str(cfg)], port, self.work)
        proc.key = self.key
        proc.extra["stats"] = str(stats)
        _wait_ready(proc, 30)
        return proc

    def db_stats(self) -> tuple[int, int]:
        engine = create_engine(self.admin_url)
        with engine.connect() as conn:
            commits, backends = conn.execute(text(
                "SELECT xact_commit + xact_rollback, numbackends FROM pg_stat_database WHERE datname = :d"
            ), {"d": self.db}).one()
        engine.dispose()
        return int(commits), int(backends)

    def redis_commands(self) -> int:
        out = subprocess.run(["redis-cli", "-p", str(self.redis_port), "INFO", "stats"], capture_output=True,
                             text=True, check=True).stdout
        line = next(x for x in out.splitlines() if x.startswith("total_commands_processed:"))
        return int(line.split(":")[1])

    def close(self) -> None:
        self.mock.stop()
        self.redis.terminate()
        self.redis.wait(10)
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)'))
        engine.dispose()


def _load(url: str, key: str, rate: float, duration: float, concurrency: int = 0) -> dict[str, Any]:
    """Open loop at `rate`, or closed loop on `concurrency` connections (saturation)."""
    mode = ["--concurrency", str(concurrency)] if concurrency else ["--rate", str(rate)]
    out = subprocess.run(
        [PYTHON, str(BENCH / "loadgen.py"), "--url", url, "--key", key, *mode, "--duration",
         str(duration), "--warmup", "2"], capture_output=True, text=True, check=True, timeout=duration + 120,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def measure(stack: Stack, n: int, rate: float, saturate: int, duration: float) -> dict[str, Any]:
    replicas = stack.replicas(n)
    lb = stack.haproxy(replicas)
    url = f"http://127.0.0.1:{lb.port}/v1/chat/completions"
    try:
        _load(url, stack.key, rate, 2)  # warm every replica's caches and connections
        cpu0 = sum(cpu_seconds(p.pid) for p in replicas)
        lb0 = cpu_seconds(lb.pid)
        db0, _ = stack.db_stats()
        redis0 = stack.redis_commands()
        t0 = time.monotonic()
        fixed = _load(url, stack.key, rate, duration)
        window = time.monotonic() - t0
        cpu = sum(cpu_seconds(p.pid) for p in replicas) - cpu0
        db1, connections = stack.db_stats()
        redis = stack.redis_commands() - redis0
        lb_cpu = cpu_seconds(lb.pid) - lb0
        # The warm-up's requests count too: the counters ran through it.
        total = max(1, fixed["sent"] + int(rate * 2))
        saturated = _load(url, stack.key, 0, duration, concurrency=saturate) if saturate > 0 else None
    finally:
        lb.stop()
        for p in replicas:
            p.stop()
    return {
        "replicas": n, "rate": rate, "ok": fixed["ok"], "errors": fixed["errors"],
        "ok_rps": round(fixed["ok"] / duration, 1),
        "p50_ms": fixed["p50_ms"], "p99_ms": fixed["p99_ms"],
        "cpu_ms_per_request": round(cpu / total * 1000, 3),
        "haproxy_cpu_ms_per_request": round(lb_cpu / total * 1000, 3),
        "db_transactions_per_request": round((db1 - db0) / total, 3),
        "db_transactions_per_s": round((db1 - db0) / window, 1), "db_connections": connections,
        "redis_commands_per_request": round(redis / total, 2),
        # What the replicas' CPU allows, one core each: the capacity projection docs/operations.md builds on.
        "rps_per_core": round(total / max(cpu, 1e-6), 1),
        **({"saturate_connections": saturate, "max_rps": saturated["achieved_rps"],
            "max_errors": saturated["errors"], "max_p50_ms": saturated["p50_ms"], "max_p99_ms": saturated["p99_ms"]}
           if saturated else {}),
    }


def ceiling(stack: Stack, saturate: int, duration: float) -> dict[str, Any]:
    """The same HAProxy and load straight to the mock upstream: what this machine serves with no hub at all."""
    lb = stack.haproxy([], ports=[stack.mock.port], health="/v1/models")
    try:
        url = f"http://127.0.0.1:{lb.port}/v1/chat/completions"
        _load(url, stack.key, 40, 2)
        saturated = _load(url, stack.key, 0, duration, concurrency=saturate)
    finally:
        lb.stop()
    return {"replicas": 0, "saturate_connections": saturate, "max_rps": saturated["achieved_rps"],
            "max_errors": saturated["errors"], "max_p50_ms": saturated["p50_ms"], "max_p99_ms": saturated["p99_ms"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", default="1,2,3")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--saturate", type=int, default=0, metavar="N",
                        help="also measure the throughput flat out: a closed loop on N connections; 0: skip. The "
                             "same through HAProxy straight to the mock is reported as replicas 0, the ceiling")
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--database", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--output", default="replicas", help="result file name under bench/results (no .json)")
    args = parser.parse_args()
    counts = [int(x) for x in args.replicas.split(",")]
    work = Path(tempfile.mkdtemp(prefix="sovhub-replicas-bench-"))
    # SIGTERM (a timeout) unwinds like Ctrl+C, so the replicas, HAProxy, Redis and the database are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    machine = machine_info()  # the commit, and the load average before this run adds its own
    stack = Stack(work, args.database)
    runs: list[dict[str, Any]] = []
    ceilings: list[dict[str, Any]] = []
    try:
        for run in range(args.runs):
            for n in counts:
                row = measure(stack, n, args.rate, args.saturate, args.duration)
                row["run"] = run
                runs.append(row)
                print(json.dumps(row), file=sys.stderr)
            if args.saturate > 0:
                row = ceiling(stack, args.saturate, args.duration)
                row["run"] = run
                ceilings.append(row)
                print(json.dumps(row), file=sys.stderr)
    finally:
        stack.close()
        shutil.rmtree(work, ignore_errors=True)
    keys = [k for k in runs[0] if k not in ("replicas", "run", "rate", "saturate_connections")
            and all(isinstance(r.get(k), int | float) for r in runs)]
    medians = [
        {"replicas": n, **{k: statistics.median(r[k] for r in runs if r["replicas"] == n) for k in keys}}
        for n in counts
    ]
    if ceilings:  # replicas 0: HAProxy straight to the mock, the ceiling of this machine
        medians.append({"replicas": 0, **{k: statistics.median(r[k] for r in ceilings)
                                           for k in ("max_rps", "max_errors", "max_p50_ms", "max_p99_ms")}})
    machine["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    result = {"machine": machine, "args": vars(args), "medians": medians, "runs": runs + ceilings}
    print(json.dumps(medians, indent=1))
    print(f"written to {write_result(args.output, result)}", file=sys.stderr)


if __name__ == "__main__":
    main()
