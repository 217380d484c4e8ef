"""Rolling restart benchmark: every replica restarted in turn behind HAProxy under an open-loop 100 RPS.

The longer sibling of tests/fleet/test_rolling_restart.py. One PostgreSQL database, one `redis-server` and
the mock upstream (bench/replicas_bench.py's Stack), `--replicas` `sovhub serve` replicas with
`server.drain_seconds = --drain`, HAProxy with readiness checks, 16 requests at once per replica and no
retries. bench/loadgen.py offers `--rate` for `--duration` s; meanwhile each replica in turn gets SIGTERM
(its /readyz answers 503, HAProxy takes it out, it drains and exits), is started again on the same port, and
the next waits until HAProxy has it back (Kubernetes' maxUnavailable 0), for `--rounds` rounds. Reported per
run: requests, failures (any non-200 or connection error at the client), p50/p99/max, the seconds each
restart took, and the usage rows that are not 200 (a request cut by a drain would be metered as 503).
Medians over `--runs`:

    PYTHONPATH=$PWD/src .venv/bin/python bench/rolling_bench.py --runs 3

Needs what bench/replicas_bench.py needs (haproxy, redis-server, PostgreSQL at --database).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from procs import BENCH, PYTHON, Proc, _wait_ready, machine_info, write_result
from replicas_bench import Stack
from sqlalchemy import create_engine, text


def _status(lb: Proc, server: str) -> str:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(lb.extra["stats"])
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
    return next(r["status"] for r in rows if r["pxname"] == "replicas" and r["svname"] == server)


def _wait(lb: Proc, server: str, status: str, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if _status(lb, server).startswith(status):
            return time.monotonic() - t0
        time.sleep(0.05)
    raise RuntimeError(f"{server} not {status} after {timeout} s")


def one_run(stack: Stack, n: int, rate: float, duration: float, drain: float, rounds: int) -> dict[str, Any]:
    env = {"SOVHUB_SERVER__DRAIN_SECONDS": str(drain)}
    replicas = stack.replicas(n, env)
    lb = stack.haproxy(replicas)
    engine = create_engine(stack.database_url)
    with engine.connect() as conn:
        first_row = int(conn.execute(text("SELECT coalesce(max(id), 0) FROM usage_records")).scalar_one())
    url = f"http://127.0.0.1:{lb.port}/v1/chat/completions"
    load = subprocess.Popen([PYTHON, str(BENCH / "loadgen.py"), "--url", url, "--key", stack.key, "--rate",
                             str(rate), "--duration", str(duration), "--warmup", "0", "--timeout", "30"],
                            stdout=subprocess.PIPE, text=True)
    restarts: list[dict[str, float]] = []
    load_started = time.monotonic()
    try:
        time.sleep(2.0)
        for _ in range(rounds):
            for i, old in enumerate(list(replicas)):
                t0 = time.monotonic()
                old.popen.send_signal(signal.SIGTERM)
                out_s = _wait(lb, f"r{i}", "DOWN", drain)
                old.popen.wait(drain + 30)
                exited_s = time.monotonic() - t0
                new = stack.spawn_replica(old.name, old.extra["data_dir"], old.port, env)
                _wait_ready(new, 300)
                _wait(lb, f"r{i}", "UP", 60)
                restarts.append({"out_s": round(out_s, 2), "exited_s": round(exited_s, 2),
                                 "back_s": round(time.monotonic() - t0, 1)})
                replicas[i] = new
        restarts_done_at = time.monotonic() - load_started
        out, _ = load.communicate(timeout=duration + 120)
        result = json.loads(out)
        time.sleep(1.0)  # the replicas' batched usage writes
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT status, count(*) FROM usage_records WHERE id > :f GROUP BY status"),
                                {"f": first_row}).all()
    finally:
        if load.poll() is None:
            load.kill()
        engine.dispose()
        lb.stop()
        for p in replicas:
            p.stop()
    usage = {int(status): int(count) for status, count in rows}
    return {
        "replicas": n, "rate": rate, "duration_s": duration, "sent": result["sent"], "ok": result["ok"],
        "failed": result["errors"], "statuses": result["statuses"], "achieved_rps": result["achieved_rps"],
        "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"], "max_ms": result["max_ms"],
        "restarts": restarts, "restarts_done_at_s": round(restarts_done_at, 1),
        "restarts_within_load": restarts_done_at < duration,
        "usage_rows": sum(usage.values()), "usage_rows_not_200": sum(v for k, v in usage.items() if k != 200),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1, help="rolling restarts of every replica per run")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=90.0)
    parser.add_argument("--drain", type=float, default=5.0)
    parser.add_argument("--database", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sovhub-rolling-bench-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    machine = machine_info()
    stack = Stack(work, args.database)
    runs: list[dict[str, Any]] = []
    try:
        for run in range(args.runs):
            row = one_run(stack, args.replicas, args.rate, args.duration, args.drain, args.rounds)
            row["run"] = run
            runs.append(row)
            print(json.dumps(row), file=sys.stderr)
    finally:
        stack.close()
        shutil.rmtree(work, ignore_errors=True)
    machine["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    keys = ("sent", "ok", "failed", "achieved_rps", "p50_ms", "p99_ms", "max_ms", "usage_rows_not_200")
    medians = {k: statistics.median(r[k] for r in runs) for k in keys}
    medians["back_s"] = statistics.median(x["back_s"] for r in runs for x in r["restarts"])
    medians["out_s"] = statistics.median(x["out_s"] for r in runs for x in r["restarts"])
    medians["failed_total"] = sum(r["failed"] for r in runs)
    result = {"machine": machine, "args": vars(args), "medians": medians, "runs": runs}
    print(json.dumps(medians, indent=1))
    print(f"written to {write_result('rolling', result)}", file=sys.stderr)


if __name__ == "__main__":
    main()
