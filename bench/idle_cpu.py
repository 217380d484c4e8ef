"""Idle CPU of `sovhub serve`: what its background loops cost with no request at all.

A gateway's CPU per request at a low rate includes the work it does every second regardless of
traffic (snapshot reloads, housekeeping, polls). This starts one gateway per variant with the
gateway benchmark's settings (mock upstream, SQLite, no Redis), lets them settle, then reads each
process's user+system CPU from /proc over the same window: CPU seconds do not depend on how busy
the machine is, so the variants can idle side by side.

A variant is NAME or NAME:KEY=VALUE,KEY=VALUE (environment settings turning one loop off);
`--tree LABEL=DIR` runs every variant from that source tree (a worktree's src/) too, as
`LABEL-NAME`, beside this checkout's own.

    .venv/bin/python bench/idle_cpu.py --seconds 60 --tree old=/work/wt/old/src \\
        --variant default --variant no-batch:SOVHUB_BATCH__ENABLED=false
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from procs import Proc, cpu_seconds, machine_info, start_mock, start_sovhub, write_result


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, pairs = text.partition(":")
    env = dict(kv.split("=", 1) for kv in pairs.split(",") if kv)
    return name, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured idle seconds")
    parser.add_argument("--settle-s", type=float, default=10.0, help="idle seconds before measuring")
    parser.add_argument("--reps", type=int, default=1, help="measured windows, one after the other")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME[:KEY=VALUE,...]")
    parser.add_argument("--sovhub-env", action="append", default=["SOVHUB_SAFETY__ENABLED=false"],
                        metavar="KEY=VALUE", help="settings every variant gets (the gateway bench's)")
    parser.add_argument("--tree", action="append", default=[], metavar="LABEL=DIR",
                        help="also run every variant from this source tree (PYTHONPATH=DIR)")
    parser.add_argument("--name", default="idle-cpu", help="result file name under bench/results/")
    args = parser.parse_args()
    variants = [parse_variant(v) for v in (args.variant or ["default"])]
    common = dict(kv.split("=", 1) for kv in args.sovhub_env)

    info = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="sovhub-idle-"))
    procs: list[Proc] = []
    gateways: dict[str, Proc] = {}
    try:
        mock = start_mock(workdir)
        procs.append(mock)
        trees: list[tuple[str, dict[str, str]]] = [("", {})]
        for spec in args.tree:
            label, _, src = spec.partition("=")
            trees.append((f"{label}-", {"PYTHONPATH": str(Path(src).resolve())}))
        info["trees"] = args.tree
        for prefix, tree_env in trees:
            for name, env in variants:
                label = prefix + name
                gw = start_sovhub(workdir, mock_port=mock.port, name=label, env={**common, **env, **tree_env})
                procs.append(gw)
                gateways[label] = gw
        time.sleep(args.settle_s)
        windows: list[dict[str, float]] = []
        for rep in range(args.reps):
            before = {label: cpu_seconds(gw.pid) for label, gw in gateways.items()}
            t0 = time.monotonic()
            time.sleep(args.seconds)
            elapsed = time.monotonic() - t0
            window = {label: round((cpu_seconds(gw.pid) - before[label]) * 1000 / elapsed, 2)
                      for label, gw in gateways.items()}
            windows.append(window)
            print(f"window {rep + 1}/{args.reps}: " + ", ".join(f"{k} {v:.2f}" for k, v in window.items())
                  + " (CPU ms per second)", flush=True)
        medians = {label: round(statistics.median(w[label] for w in windows), 2) for label in gateways}
        result: dict[str, Any] = {
            "benchmark": "idle CPU", "machine": info,
            "config": {"seconds": args.seconds, "settle_s": args.settle_s, "reps": args.reps,
                       "sovhub_env": args.sovhub_env, "variants": args.variant or ["default"],
                       "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])},
            "unit": "CPU ms per wall second (user+system, process and children)",
            "median": medians, "windows": windows,
        }
        out = write_result(args.name, result)
        for label, value in medians.items():
            print(f"{label:24s} {value:8.2f} CPU ms/s")
        print(f"\nwritten {out.relative_to(out.parents[2])}")
    finally:
        for proc in reversed(procs):
            proc.stop()


if __name__ == "__main__":
    main()
