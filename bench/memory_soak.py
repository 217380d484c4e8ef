"""Memory soak: sovhub's RSS under a steady load through the gateway (mock upstream) for N seconds.

sovhub (fresh data dir, embedded model off, metering on) fronts the mock upstream; the open-loop
load generator sends `--rate` RPS for `--warmup-s` and then `--duration-s` more, in 30-second
segments, while this script samples the RSS of the sovhub process every `--sample-s` seconds.
The reference is the RSS at the end of warm-up; the check is that every later sample stays
within `--bound-pct` (5%) of it.

    .venv/bin/python bench/memory_soak.py                     # 600 s; writes bench/results/memory.json
    .venv/bin/python bench/memory_soak.py --duration-s 60 --name memory-short
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from procs import BENCH, PYTHON, Proc, machine_info, pinned, rss_bytes, start_mock, start_sovhub, write_result

SEGMENT_S = 30.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=600.0, help="measured seconds after warm-up")
    parser.add_argument("--warmup-s", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=100.0, help="steady requests per second")
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--bound-pct", type=float, default=5.0)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--name", default="memory")
    parser.add_argument("--sovhub-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for sovhub, e.g. SOVHUB_SAFETY__ENABLED=false")
    args = parser.parse_args()
    pin = (os.cpu_count() or 1) >= 2
    load_cpus, gw_cpus = ("0", "1") if pin else (None, None)

    info = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="sovhub-soak-"))
    procs: list[Proc] = []
    samples: list[tuple[float, int]] = []
    segments: list[dict[str, Any]] = []
    stop = threading.Event()
    try:
        mock = start_mock(workdir, load_cpus)
        procs.append(mock)
        env = dict(kv.split("=", 1) for kv in args.sovhub_env)
        sov = start_sovhub(workdir, mock_port=mock.port, cpus=gw_cpus, env=env)
        procs.append(sov)
        t0 = time.monotonic()

        def sampler() -> None:
            while not stop.is_set():
                samples.append((round(time.monotonic() - t0, 1), rss_bytes(sov.pid)))
                stop.wait(args.sample_s)

        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        total = args.warmup_s + args.duration_s
        while time.monotonic() - t0 < total:
            seg = min(SEGMENT_S, total - (time.monotonic() - t0))
            if seg < 1:
                break
            cmd = pinned([PYTHON, str(BENCH / "loadgen.py"), "--url",
                          f"http://127.0.0.1:{sov.port}/v1/chat/completions", "--key", sov.key or "",
                          "--rate", str(args.rate), "--duration", f"{seg:.1f}", "--warmup", "0"]
                         + (["--stream"] if args.stream else []), load_cpus)
            out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=seg + 60)
            if out.returncode != 0:
                raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
            s = json.loads(out.stdout)
            segments.append({"t_end_s": round(time.monotonic() - t0, 1), **{k: s[k] for k in (
                "sent", "ok", "errors", "achieved_rps", "p50_ms", "p99_ms")}})
            print(f"  t={segments[-1]['t_end_s']:6.0f}s rss {samples[-1][1] / 2**20:7.1f} MiB  "
                  f"achieved {s['achieved_rps']:6.1f} RPS p99 {s['p99_ms']:7.2f} ms errors {s['errors']}", flush=True)
        stop.set()
        thread.join()
    finally:
        stop.set()
        for proc in reversed(procs):
            proc.stop()

    after = [(t, r) for t, r in samples if t >= args.warmup_s]
    before = [r for t, r in samples if t <= args.warmup_s]
    warm = before[-1] if before else after[0][1]
    values = [r for _, r in after]
    mib = 2**20
    summary = {
        "start_mib": round(samples[0][1] / mib, 1), "warm_mib": round(warm / mib, 1),
        "max_mib": round(max(values) / mib, 1), "min_mib": round(min(values) / mib, 1),
        "end_mib": round(values[-1] / mib, 1),
        "drift_end_pct": round((values[-1] - warm) / warm * 100, 2),
        "max_deviation_pct": round(max(abs(v - warm) for v in values) / warm * 100, 2),
        "requests": sum(s["sent"] for s in segments), "errors": sum(s["errors"] for s in segments),
    }
    summary["within_bound"] = summary["max_deviation_pct"] <= args.bound_pct
    result = {
        "benchmark": "memory soak", "machine": info,
        "config": {"duration_s": args.duration_s, "warmup_s": args.warmup_s, "rate": args.rate,
                   "sample_s": args.sample_s, "bound_pct": args.bound_pct, "stream": args.stream,
                   "upstream": "mock", "pinning": "sovhub on CPU 1, load + mock on CPU 0" if pin else "none",
                   "sovhub_env": args.sovhub_env},
        "summary": summary, "segments": segments,
        "rss_mib": [[t, round(r / mib, 1)] for t, r in samples],
    }
    path = write_result(args.name, result)
    print(f"\nRSS MiB: start {summary['start_mib']}, after warm-up {summary['warm_mib']}, max {summary['max_mib']}, "
          f"end {summary['end_mib']}; drift at end {summary['drift_end_pct']:+.2f}%, largest deviation "
          f"{summary['max_deviation_pct']:.2f}% (bound {args.bound_pct}%): "
          f"{'PASS' if summary['within_bound'] else 'FAIL'}; {summary['requests']} requests, "
          f"{summary['errors']} errors")
    print(f"written {path.relative_to(BENCH.parent)}")


if __name__ == "__main__":
    main()
