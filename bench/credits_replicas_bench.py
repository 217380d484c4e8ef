"""Exactness of credits across replicas: 3 `sovhub serve` processes on one PostgreSQL and Redis, 64 clients.

A grant pays for exactly K requests (the mock always answers 4 completion tokens, and a request
with max_tokens 4 and a two-character prompt reserves exactly its cost). N > K requests go to the
replicas in turn from 64 client threads, each with its own x-request-id. Then:

* exactly K answers are 200 and the rest 429 insufficient_quota;
* the grant's posted debits are exactly K times the cost, nothing is left pending;
* every answered request id has exactly one posted usage debit in the ledger;
* `sovhub ledger verify` exits 0.

With ``--kill`` one replica is killed (SIGKILL) half-way; the survivors resolve its reservations
once they expire (``credits.reservation_ttl_s``, set to 10 s here), and the same checks run over
the answered requests (a request the killed replica never answered may be charged as reserved).

    SOVHUB_BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
    SOVHUB_BENCH_REDIS_URL=redis://127.0.0.1:6379/3 PYTHONPATH=$PWD/src \\
        .venv/bin/python bench/credits_replicas_bench.py [--kill]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from procs import SOVHUB, Proc, _spawn, free_port, start_mock, write_result
from sqlalchemy import create_engine, text


def _cli(data_dir: Path, env: dict[str, str], *args: str) -> str:
    out = subprocess.run([SOVHUB, "--data-dir", str(data_dir), *args], capture_output=True, text=True,
                         env={**os.environ, **env}, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"sovhub {' '.join(args)}: {out.stderr}")
    return out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--paid", type=int, default=300, help="K: requests the grant pays for")
    parser.add_argument("--requests", type=int, default=600, help="N: requests sent")
    parser.add_argument("--kill", action="store_true")
    args = parser.parse_args()
    base = os.environ["SOVHUB_BENCH_DATABASE_URL"]
    redis_url = os.environ["SOVHUB_BENCH_REDIS_URL"]
    schema = "crbench_" + uuid.uuid4().hex[:8]
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    database = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    workdir = Path(tempfile.mkdtemp(prefix="sovhub-crrep-"))
    env = {"SOVHUB_DATABASE_URL": database, "SOVHUB_EMBEDDED_ENABLED": "false", "SOVHUB_EMBEDDINGS_ENABLED": "false",
           "SOVHUB_SAFETY__ENABLED": "false", "SOVHUB_ACCESS__REDIS_URL": redis_url,
           "SOVHUB_ACCESS__REDIS_PREFIX": f"crbench:{schema}:rl:", "SOVHUB_CREDITS__REDIS_PREFIX": f"crbench:{schema}:",
           "SOVHUB_CREDITS__RESERVATION_TTL_S": "10"}
    procs: list[Proc] = []
    try:
        mock = start_mock(workdir)
        procs.append(mock)
        setup = workdir / "setup"
        _cli(setup, env, "backends", "add", "mock", "--url", f"http://127.0.0.1:{mock.port}/v1",
             "--model", "mock-model")
        _cli(setup, env, "orgs", "create", "bench")
        key = _cli(setup, env, "keys", "create", "--org", "bench").strip().splitlines()[-1]
        _cli(setup, env, "programmes", "create", "Bench", "--budget", "1000000", "--partner", "Fund=70",
             "--partner", "Bank=30")
        # 0.25 credits per output token: a request costs (and reserves) exactly 1 credit.
        _cli(setup, env, "prices", "set", "mock-model", "--input-per-1m", "0", "--output-per-1m", "250000")
        _cli(setup, env, "programmes", "grant", "Bench", "bench", str(args.paid), "--reason", "bench")
        replicas = []
        for i in range(args.replicas):
            shutil.copytree(setup, workdir / f"r{i}")
            port = free_port()
            proc = _spawn(f"replica{i}", [SOVHUB, "--data-dir", str(workdir / f"r{i}"), "serve", "--port", str(port)],
                          port, workdir, env)
            proc.key = key
            procs.append(proc)
            replicas.append(proc)
        for proc in replicas:
            deadline = time.monotonic() + 300
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{proc.port}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.popen.poll() is not None:
                    raise RuntimeError(proc.tail())
                time.sleep(0.5)
        killed = threading.Event()
        answered: list[str] = []
        codes: Counter[int] = Counter()
        lock = threading.Lock()
        clients = [httpx.Client(base_url=f"http://127.0.0.1:{p.port}", timeout=30) for p in replicas]

        def one(i: int) -> None:
            if args.kill and i == args.requests // 2 and not killed.is_set():
                os.killpg(replicas[0].popen.pid, signal.SIGKILL)
                killed.set()
            target = i % args.replicas
            if killed.is_set() and target == 0:
                target = 1
            rid = f"crb-{i}"
            try:
                r = clients[target].post("/v1/chat/completions", headers={"authorization": f"Bearer {key}",
                                                                          "x-request-id": rid},
                                         json={"model": "mock-model", "max_tokens": 4,
                                               "messages": [{"role": "user", "content": "hi"}]})
                code = r.status_code
            except httpx.HTTPError:
                code = 0
            with lock:
                codes[code] += 1
                if code == 200:
                    answered.append(rid)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(one, range(args.requests)))
        elapsed = time.perf_counter() - t0
        time.sleep(15 if args.kill else 3)  # reservations of a killed replica expire; journals reach the ledger
        with engine.connect() as conn:
            conn.execute(text(f'SET search_path TO "{schema}"'))
            posts = Counter(r for (r,) in conn.execute(text(
                "SELECT request_id FROM credit_transfers WHERE code = 'usage' AND kind IN ('post', 'posted') "
                "AND amount > 0")))
            grant = conn.execute(text("SELECT debits_posted, debits_pending, credits_posted FROM credit_accounts "
                                      "WHERE kind = 'grant'")).one()
            expired = conn.execute(text("SELECT count(*) FROM credit_transfers WHERE code = 'usage' AND kind = 'post' "
                                        "AND details LIKE '%expired%'")).scalar()
        verify = subprocess.run([SOVHUB, "--data-dir", str(workdir / "r1"), "ledger", "verify"], capture_output=True,
                                text=True, env={**os.environ, **env}, check=False)
        once = all(posts[r] == 1 for r in answered)
        result = {
            "replicas": args.replicas, "clients": args.clients, "requests": args.requests, "paid_for": args.paid,
            "kill": args.kill, "codes": dict(codes), "answered": len(answered), "seconds": round(elapsed, 2),
            "grant_posted_credits": grant[0] / 1_000_000, "grant_pending": grant[1],
            "answered_with_exactly_one_debit": once, "posted_debits": sum(posts.values()),
            "charged_as_reserved_after_expiry": expired, "ledger_verify_exit": verify.returncode,
            "exact": (once and grant[1] == 0 and verify.returncode == 0 and grant[0] <= grant[2]
                      and (args.kill or (len(answered) == args.paid and grant[0] == args.paid * 1_000_000))),
        }
        print(json.dumps(result, indent=2))
        write_result("credits-replicas-kill" if args.kill else "credits-replicas", result)
    finally:
        for proc in reversed(procs):
            proc.stop()
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


if __name__ == "__main__":
    main()
