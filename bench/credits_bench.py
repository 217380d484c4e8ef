"""Credits on against off: the same open-loop load through two sovhub servers, one run, interleaved.

Both serve `mock-model` from one mock upstream on loopback; the *on* server's organization holds a
grant and the model a price, so every request is reserved, settled and journalled into the ledger
(memory live store: one replica, SQLite); the *off* server's organization holds none. Per
repetition (the order rotates): a fixed rate (default 500 RPS) for each -> p50/p99 and their
difference, then a short ladder -> the highest rate each sustains. Gateways pinned to CPU 1, the
load generator and mock to CPU 0 (as bench/gateway_bench.py). After the run, `sovhub ledger verify`
runs on the *on* server's data dir.

    PYTHONPATH=$PWD/src .venv/bin/python bench/credits_bench.py --reps 3   # bench/results/credits.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway_bench import drain, ladder, load, report
from procs import SOVHUB, Proc, machine_info, start_mock, start_sovhub, write_result


def _cli(data_dir: str, *args: str) -> str:
    out = subprocess.run([SOVHUB, "--data-dir", data_dir, *args], capture_output=True, text=True, check=False,
                         env={**os.environ, "SOVHUB_EMBEDDED_ENABLED": "false"})
    if out.returncode != 0:
        raise RuntimeError(f"sovhub {' '.join(args)}: {out.stdout}{out.stderr}")
    return out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--step-s", type=float, default=6.0)
    parser.add_argument("--warmup-s", type=float, default=2.0)
    parser.add_argument("--p99-bound-ms", type=float, default=100.0)
    parser.add_argument("--ladder", type=lambda s: [float(x) for x in s.split(",")], default=[300, 400, 500, 600,
                                                                                                800, 1000])
    parser.add_argument("--no-ladder", action="store_true")
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()
    args.stream, args.distinct = False, 0
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    args.load_cpus, gw_cpus = ("0", "1") if pin else (None, None)
    workdir = Path(tempfile.mkdtemp(prefix="sovhub-crbench-"))
    procs: list[Proc] = []
    try:
        mock = start_mock(workdir, args.load_cpus)
        procs.append(mock)
        args.mock_port = mock.port
        env = {"SOVHUB_SAFETY__ENABLED": "false"}
        off = start_sovhub(workdir, mock_port=mock.port, cpus=gw_cpus, env=env)
        procs.append(off)
        on = start_sovhub(workdir, mock_port=mock.port, cpus=gw_cpus, env=env)
        procs.append(on)
        data_dir = on.extra["data_dir"]
        _cli(data_dir, "programmes", "create", "Bench", "--budget", "100000000", "--partner", "Fund=60",
             "--partner", "Bank=40")
        _cli(data_dir, "prices", "set", "mock-model", "--input-per-1m", "1", "--output-per-1m", "2")
        _cli(data_dir, "programmes", "grant", "Bench", "bench", "10000000", "--reason", "bench")
        time.sleep(6)  # the server's credit state reloads every access.state_refresh_s (5 s)
        targets = {"off": (off.port, off.key, off), "on": (on.port, on.key, on)}
        for port, key, gw in targets.values():
            load(port, key, 50.0, argparse.Namespace(**{**vars(args), "step_s": 3.0}), gw)
            drain(port, key, gw)
        reps: list[dict[str, Any]] = []
        names = list(targets)
        for rep in range(args.reps):
            order = names[rep % 2:] + names[: rep % 2]
            print(f"rep {rep + 1}/{args.reps} (order {', '.join(order)})", flush=True)
            record: dict[str, Any] = {"fixed": {}, "ladder": {}}
            for name in order:
                port, key, gw = targets[name]
                record["fixed"][name] = step = load(port, key, args.rate, args, gw)
                report("fixed", name, step)
                drain(port, key, gw)
            if not args.no_ladder:
                for name in order:
                    record["ladder"][name] = ladder(name, *targets[name], args)
            reps.append(record)
        verify = subprocess.run([SOVHUB, "--data-dir", data_dir, "ledger", "verify"], capture_output=True,
                                text=True, check=False)
        credits = _cli(data_dir, "programmes", "list")

        def med(name: str, field: str) -> float:
            return round(statistics.median(r["fixed"][name][field] for r in reps), 3)

        summary = {
            "p50_ms": {n: med(n, "p50_ms") for n in names}, "p99_ms": {n: med(n, "p99_ms") for n in names},
            "added_p50_ms": round(med("on", "p50_ms") - med("off", "p50_ms"), 3),
            "added_p99_ms": round(med("on", "p99_ms") - med("off", "p99_ms"), 3),
            "cpu_ms_per_req": {n: med(n, "gateway_cpu_ms_per_req") for n in names},
            "max_sustained_rps": {n: statistics.median(r["ladder"][n]["max_sustained_rps"] for r in reps)
                                  for n in names} if not args.no_ladder else None,
            "ledger_verify_exit": verify.returncode, "ledger_verify": verify.stdout.strip(),
            "programme_after": credits.strip(),
        }
        out = write_result("credits", {"machine": machine_info(), "pinned": pin, "rate": args.rate,
                                       "reps": reps, "summary": summary})
        print(summary)
        print(f"written {out}")
    finally:
        for proc in reversed(procs):
            proc.stop()


if __name__ == "__main__":
    main()
