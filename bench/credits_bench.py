"""Credits on against off: the same open-loop load through two sovhub servers, one run, interleaved.

The question of LiteLLM issue #31866 (per-request spend counter updates pushed tail latency to
seconds at 500 RPS): what does paying every request from a grant cost the request path?

Both servers serve `mock-model` from one mock upstream on loopback (a fixed answer, no model);
the *on* server's organization holds a grant and the model a price, so every request is reserved
at admission, settled at its end and journalled into the ledger; the *off* server's organization
holds none. The live store is the process's memory (one replica, SQLite), or Redis with
``--redis-url`` (the several-replica set-up: one Redis round trip per request). Per repetition
(the order rotates) and per rate of ``--rates`` (default 500): ``--step-s`` seconds of open-loop
load at that fixed rate on each server (latency from the *intended* send time, so a slow server
cannot lower the offered load) -> p50/p95/p99, their differences and ratios on/off, the achieved
rate, errors, and the server's CPU per request; the load average before each step is recorded,
since the machine may be shared. Optionally (``--ladder``) a short ladder -> the highest rate
each sustains. Gateways pinned to CPU 1, the load generator and mock to CPU 0 (as
bench/gateway_bench.py). After the run, `sovhub ledger verify` runs on the *on* server's data.

    PYTHONPATH=$PWD/src .venv/bin/python bench/credits_bench.py --reps 3 [--rates 500,150] \\
        [--redis-url redis://127.0.0.1:6379/3]                       # bench/results/credits.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from gateway_bench import drain, ladder, load, report
from procs import SOVHUB, Proc, machine_info, start_mock, start_sovhub, write_result

QUANTILES = ("p50_ms", "p95_ms", "p99_ms")


def _cli(data_dir: str, env: dict[str, str], *args: str) -> str:
    out = subprocess.run([SOVHUB, "--data-dir", data_dir, *args], capture_output=True, text=True, check=False,
                         env={**os.environ, "SOVHUB_EMBEDDED_ENABLED": "false", **env})
    if out.returncode != 0:
        raise RuntimeError(f"sovhub {' '.join(args)}: {out.stdout}{out.stderr}")
    return out.stdout


def _summary(reps: list[dict[str, Any]], rate: float) -> dict[str, Any]:
    key = str(int(rate))

    def med(name: str, field: str) -> float:
        return round(statistics.median(r["fixed"][key][name][field] for r in reps), 3)

    row: dict[str, Any] = {}
    for q in QUANTILES:
        off, on = med("off", q), med("on", q)
        row[q] = {"off": off, "on": on, "added": round(on - off, 3), "ratio": round(on / off, 3) if off else None}
    for field in ("achieved_rps", "error_rate", "gateway_cpu_ms_per_req"):
        row[field] = {n: med(n, field) for n in ("off", "on")}
    row["loadavg_1m_before_steps"] = [r["fixed"][key][n]["loadavg_1m_before"] for r in reps for n in ("off", "on")]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[500.0])
    parser.add_argument("--step-s", type=float, default=6.0)
    parser.add_argument("--warmup-s", type=float, default=2.0)
    parser.add_argument("--p99-bound-ms", type=float, default=100.0)
    parser.add_argument("--ladder", type=lambda s: [float(x) for x in s.split(",")], default=None,
                        help="rates for a sustained-RPS ladder, e.g. 300,400,500,600,800 (off by default)")
    parser.add_argument("--redis-url", default=os.environ.get("SOVHUB_BENCH_REDIS_URL"))
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()
    args.stream, args.distinct = False, 0
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    args.load_cpus, gw_cpus = ("0", "1") if pin else (None, None)
    info = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="sovhub-crbench-"))
    procs: list[Proc] = []
    try:
        mock = start_mock(workdir, args.load_cpus)
        procs.append(mock)
        args.mock_port = mock.port
        envs: dict[str, dict[str, str]] = {}
        for name in ("off", "on"):
            env = {"SOVHUB_SAFETY__ENABLED": "false"}
            if args.redis_url:
                prefix = f"crbench:{uuid.uuid4().hex[:8]}:"
                env |= {"SOVHUB_ACCESS__REDIS_URL": args.redis_url, "SOVHUB_ACCESS__REDIS_PREFIX": prefix + "rl:",
                        "SOVHUB_CREDITS__REDIS_PREFIX": prefix}
            envs[name] = env
        off = start_sovhub(workdir, mock_port=mock.port, cpus=gw_cpus, env=envs["off"])
        procs.append(off)
        on = start_sovhub(workdir, mock_port=mock.port, cpus=gw_cpus, env=envs["on"])
        procs.append(on)
        data_dir = on.extra["data_dir"]
        _cli(data_dir, envs["on"], "programmes", "create", "Bench", "--budget", "100000000", "--partner", "Fund=60",
             "--partner", "Bank=40")
        _cli(data_dir, envs["on"], "prices", "set", "mock-model", "--input-per-1m", "1", "--output-per-1m", "2")
        _cli(data_dir, envs["on"], "programmes", "grant", "Bench", "bench", "10000000", "--reason", "bench")
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
            for rate in args.rates:
                record["fixed"][str(int(rate))] = steps = {}
                for name in order:
                    port, key, gw = targets[name]
                    before = round(os.getloadavg()[0], 2)
                    steps[name] = step = load(port, key, rate, args, gw) | {"loadavg_1m_before": before}
                    report("fixed", name, step)
                    drain(port, key, gw)
            if args.ladder:
                for name in order:
                    port, key, gw = targets[name]
                    record["ladder"][name] = ladder(name, port, key, argparse.Namespace(
                        **{**vars(args), "ladder": args.ladder}), gw)
            reps.append(record)
        verify = subprocess.run([SOVHUB, "--data-dir", data_dir, "ledger", "verify"], capture_output=True,
                                text=True, check=False, env={**os.environ, **envs["on"]})
        credits = _cli(data_dir, envs["on"], "programmes", "list")
        summary: dict[str, Any] = {
            "at_rate": {str(int(rate)): _summary(reps, rate) for rate in args.rates},
            "max_sustained_rps": {n: statistics.median(r["ladder"][n]["max_sustained_rps"] for r in reps)
                                  for n in names} if args.ladder else None,
            "ledger_verify_exit": verify.returncode, "ledger_verify": verify.stdout.strip(),
            "programme_after": credits.strip(),
        }
        out = write_result("credits", {"machine": info, "loadavg_at_end": [round(x, 2) for x in
                                                                                    os.getloadavg()],
                                       "pinned": pin, "rates": args.rates, "step_s": args.step_s,
                                       "live_store": "redis" if args.redis_url else "memory",
                                       "reps": reps, "summary": summary})
        for rate, row in summary["at_rate"].items():
            print(f"{rate} RPS: " + ", ".join(f"{q[:-3]} off {row[q]['off']} on {row[q]['on']} ms "
                                              f"(+{row[q]['added']}, x{row[q]['ratio']})" for q in QUANTILES)
                  + f"; achieved {row['achieved_rps']}, errors {row['error_rate']}")
        print(f"ledger verify exit {verify.returncode}; written {out}")
    finally:
        for proc in reversed(procs):
            proc.stop()


if __name__ == "__main__":
    main()
