"""Gateway overhead: the same open-loop load direct to a mock upstream, through sovhub, through LiteLLM.

All three run in one invocation, interleaved per repetition (the order rotates), against one
mock upstream on loopback:

1. a fixed rate (default 500 RPS) for each target -> p50/p99 latency; *added* latency is the
   target's percentile minus the direct run's percentile of the same repetition;
2. a low rate every target sustains (default 50 RPS) -> the same, where LiteLLM is not overloaded;
3. a rate ladder -> the highest step a target *sustains*: no errors, achieved >= 97% of the
   offered rate, and p99 (from the intended send time) under `--p99-bound-ms`.

With 2+ CPUs the gateway under test is pinned to CPU 1 and the load generator and the mock to
CPU 0 (`--no-pin` turns that off), so the gateway gets one core to itself, as a single worker
process would. The load generator still shares the machine: see docs/benchmarks.md.

    .venv/bin/python bench/gateway_bench.py --reps 3           # writes bench/results/gateway.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from procs import (
    BENCH,
    PYTHON,
    Proc,
    cpu_seconds,
    machine_info,
    mock_stats,
    pinned,
    post_chat,
    start_litellm,
    start_mock,
    start_sovhub,
    write_result,
)

LADDER = [25, 50, 75, 100, 150, 200, 300, 400, 500, 600, 800, 1000, 1250, 1500, 2000, 2500, 3000, 4000]


def load(port: int, key: str | None, rate: float, args: argparse.Namespace, gateway: Proc | None) -> dict[str, Any]:
    cmd = pinned(
        [PYTHON, str(BENCH / "loadgen.py"), "--url", f"http://127.0.0.1:{port}/v1/chat/completions",
         "--rate", str(rate), "--duration", str(args.step_s), "--warmup", str(args.warmup_s), "--timeout", "10"]
        + (["--key", key] if key else []) + (["--stream"] if args.stream else [])
        + (["--distinct", str(args.distinct)] if args.distinct else []),
        args.load_cpus,
    )
    cpu0 = cpu_seconds(gateway.pid) if gateway else 0.0
    conns0 = mock_stats(args.mock_port)["connections"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=args.step_s + args.warmup_s + 60)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(out.stdout)
    if gateway is not None and summary["sent"]:
        # Upstream connections the gateway opened per request (0 when it keeps a warm pool).
        summary["upstream_conns_per_req"] = round(
            (mock_stats(args.mock_port)["connections"] - conns0) / (rate * (args.step_s + args.warmup_s)), 3)
    if gateway is not None and summary["sent"]:
        # CPU per request over the whole step (warm-up included): a load-independent cost figure.
        total = rate * (args.step_s + args.warmup_s)
        summary["gateway_cpu_ms_per_req"] = round((cpu_seconds(gateway.pid) - cpu0) * 1000 / total, 3)
    return summary


def drain(port: int, key: str | None, gateway: Proc | None, limit: float = 300.0) -> None:
    """After an overloaded step, wait until the target is idle (its backlog served) and answers promptly."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if gateway is not None:
            before = cpu_seconds(gateway.pid)
            time.sleep(1.0)
            if cpu_seconds(gateway.pid) - before > 0.1:
                continue
        t0 = time.perf_counter()
        if post_chat(port, key, timeout=5.0) == 200 and time.perf_counter() - t0 < 0.2:
            return
        time.sleep(1.0)


def sustained(step: dict[str, Any], bound_ms: float) -> bool:
    return bool(
        step["errors"] == 0 and step["achieved_rps"] >= 0.97 * step["rate"] and step["p99_ms"] < bound_ms
    )


def ladder(target: str, port: int, key: str | None, args: argparse.Namespace, gw: Proc | None) -> dict[str, Any]:
    steps = []
    best = 0.0
    for rate in args.ladder:
        step = load(port, key, rate, args, gw)
        ok = sustained(step, args.p99_bound_ms)
        steps.append({k: step[k] for k in ("rate", "achieved_rps", "errors", "p50_ms", "p99_ms")} | {"ok": ok})
        print(f"    ladder {target:8s} {rate:6.0f} RPS: achieved {step['achieved_rps']:7.1f} "
              f"p99 {step['p99_ms']:9.2f} ms errors {step['errors']} {'ok' if ok else 'FAIL'}", flush=True)
        if not ok:
            drain(port, key, gw)
            break
        best = rate
    return {"max_sustained_rps": best, "steps": steps}


def report(phase: str, name: str, step: dict[str, Any]) -> None:
    print(f"  {phase:5s} {name:8s} {step['rate']:5.0f} RPS: p50 {step['p50_ms']:8.3f} p99 {step['p99_ms']:9.3f}"
          f" ms  achieved {step['achieved_rps']:7.1f} errors {step['errors']}"
          f"  cpu/req {step.get('gateway_cpu_ms_per_req', 0):.3f} ms"
          f"  upstream conns/req {step.get('upstream_conns_per_req', 0):.3f}", flush=True)


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rate", type=float, default=500.0, help="the fixed rate for added latency")
    parser.add_argument("--low-rate", type=float, default=50.0, help="a rate every target sustains")
    parser.add_argument("--step-s", type=float, default=6.0, help="measured seconds per step")
    parser.add_argument("--warmup-s", type=float, default=2.0, help="unmeasured seconds before each step")
    parser.add_argument("--p99-bound-ms", type=float, default=100.0)
    parser.add_argument("--ladder", type=lambda s: [float(x) for x in s.split(",")], default=LADDER)
    parser.add_argument("--no-ladder", action="store_true")
    parser.add_argument("--stream", action="store_true", help="streaming requests (SSE) instead of JSON")
    parser.add_argument("--distinct", type=int, default=0, metavar="N",
                        help="N different messages sent in turn (so that the guards' per-text cache misses)")
    parser.add_argument("--litellm-venv", type=Path, default=Path("/work/litellm-venv"))
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--sovhub-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--name", default="gateway", help="result file name under bench/results/")
    parser.add_argument("--baseline-src", type=Path, default=None, metavar="DIR",
                        help="also run sovhub from this source tree (a worktree of an older commit's src/) as "
                             "target `baseline`, interleaved with the others, to compare two versions in one run")
    args = parser.parse_args()
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    args.load_cpus, gw_cpus = ("0", "1") if pin else (None, None)
    use_litellm = not args.no_litellm and (args.litellm_venv / "bin" / "litellm").exists()

    info = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="sovhub-gwbench-"))
    procs: list[Proc] = []
    try:
        mock = start_mock(workdir, args.load_cpus)
        procs.append(mock)
        args.mock_port = mock.port
        env = dict(kv.split("=", 1) for kv in args.sovhub_env)
        sov = start_sovhub(workdir, mock_port=mock.port, cpus=gw_cpus, env=env)
        procs.append(sov)
        targets: dict[str, tuple[int, str | None, Proc | None]] = {
            "direct": (mock.port, None, None), "sovhub": (sov.port, sov.key, sov),
        }
        if args.baseline_src is not None:
            base = start_sovhub(workdir, mock_port=mock.port, cpus=gw_cpus, name="baseline",
                                env={**env, "PYTHONPATH": str(args.baseline_src.resolve())})
            procs.append(base)
            targets["baseline"] = (base.port, base.key, base)
            info["baseline_src"] = str(args.baseline_src)
        if use_litellm:
            lite = start_litellm(workdir, args.litellm_venv, mock.port, gw_cpus)
            procs.append(lite)
            targets["litellm"] = (lite.port, lite.key, lite)
            info["litellm_version"] = _litellm_version(args.litellm_venv)
        for port, key, gw in targets.values():  # warm caches, pools, lazy imports
            load(port, key, min(args.low_rate, 50.0), argparse.Namespace(**{**vars(args), "step_s": 3.0}), gw)
            drain(port, key, gw)

        reps: list[dict[str, Any]] = []
        names = list(targets)
        for rep in range(args.reps):
            order = names[rep % len(names):] + names[: rep % len(names)]
            print(f"rep {rep + 1}/{args.reps} (order {', '.join(order)})", flush=True)
            record: dict[str, Any] = {"fixed": {}, "low": {}, "ladder": {}}
            # Low rate first, then the ladder, then the fixed rate: an overloaded step leaves a
            # backlog behind, so the fixed rate runs last and only where the ladder sustained it
            # (elsewhere the first failing ladder step is the evidence, and nothing is poisoned).
            for name in order:
                record["low"][name] = step = load(*targets[name][:2], args.low_rate, args, targets[name][2])
                report("low", name, step)
                drain(*targets[name])
            for name in order:
                port, key, gw = targets[name]
                if not args.no_ladder:
                    record["ladder"][name] = ladder(name, port, key, args, gw)
                    if record["ladder"][name]["max_sustained_rps"] < args.rate:
                        record["fixed"][name] = None
                        print(f"  fixed {name:8s} skipped: sustains only "
                              f"{record['ladder'][name]['max_sustained_rps']:.0f} RPS < {args.rate:.0f}", flush=True)
                        continue
                record["fixed"][name] = step = load(port, key, args.rate, args, gw)
                report("fixed", name, step)
                drain(port, key, gw)
            reps.append(record)
        result = summarize(reps, targets, args, info, pin)
        out = write_result(args.name, result)
        print_table(result)
        print(f"\nwritten {out.relative_to(BENCH.parent)}")
    finally:
        for proc in reversed(procs):
            proc.stop()


def _litellm_version(venv: Path) -> str:
    out = subprocess.run([str(venv / "bin" / "python"), "-c", "import importlib.metadata as m;"
                          "print(m.version('litellm'))"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def summarize(reps: list[dict[str, Any]], targets: dict[str, Any], args: argparse.Namespace,
              info: dict[str, Any], pin: bool) -> dict[str, Any]:
    med: dict[str, Any] = {}
    for phase in ("fixed", "low"):
        med[phase] = {}
        for name in targets:
            steps = [r[phase][name] for r in reps if r[phase].get(name)]
            if not steps:
                med[phase][name] = None
                continue
            row = {k: median([s[k] for s in steps]) for k in ("p50_ms", "p99_ms", "svc_p50_ms", "svc_p99_ms",
                                                               "achieved_rps", "error_rate")}
            if name != "direct":
                row["cpu_ms_per_req"] = median([s["gateway_cpu_ms_per_req"] for s in steps])
                row["upstream_conns_per_req"] = median([s["upstream_conns_per_req"] for s in steps])
                for q in ("p50", "p99"):
                    # Added latency per repetition (target minus direct, same repetition), then the median.
                    row[f"added_{q}_ms"] = median([r[phase][name][f"{q}_ms"] - r[phase]["direct"][f"{q}_ms"]
                                                   for r in reps if r[phase].get(name) and r[phase].get("direct")])
            med[phase][name] = row
    if reps and reps[0]["ladder"]:
        med["max_sustained_rps"] = {
            name: median([r["ladder"][name]["max_sustained_rps"] for r in reps]) for name in targets
        }
        if "litellm" in targets and med["max_sustained_rps"]["litellm"]:
            med["sustained_ratio_sovhub_vs_litellm"] = round(
                med["max_sustained_rps"]["sovhub"] / med["max_sustained_rps"]["litellm"], 2)
    for phase in ("fixed", "low"):
        for name in targets:
            for r in reps:
                if r[phase].get(name):
                    r[phase][name].pop("statuses", None)
    return {
        "benchmark": "gateway overhead", "machine": info,
        "config": {"reps": args.reps, "rate": args.rate, "low_rate": args.low_rate, "step_s": args.step_s,
                   "warmup_s": args.warmup_s, "p99_bound_ms": args.p99_bound_ms, "stream": args.stream,
                   "pinning": "gateway on CPU 1, load generator + mock on CPU 0" if pin else "none",
                   "sovhub_env": args.sovhub_env, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])},
        "targets": {"p99_added_ms_at_rate_max": 2.0, "sustained_ratio_min": 3.0},
        "median": med, "runs": reps,
    }


def print_table(result: dict[str, Any]) -> None:
    med = result["median"]
    cfg = result["config"]
    for phase, rate in (("fixed", cfg["rate"]), ("low", cfg["low_rate"])):
        print(f"\n{rate:.0f} RPS, median of {cfg['reps']} runs")
        print(f"{'target':8s} {'p50 ms':>9s} {'p99 ms':>9s} {'+p50 ms':>9s} {'+p99 ms':>9s} {'achieved':>9s} "
              f"{'err %':>6s} {'cpu/req ms':>10s}")
        for name, row in med[phase].items():
            if row is None:
                print(f"{name:8s} not sustained at this rate (see the ladder)")
                continue
            print(f"{name:8s} {row['p50_ms']:9.3f} {row['p99_ms']:9.3f} {row.get('added_p50_ms', 0):9.3f} "
                  f"{row.get('added_p99_ms', 0):9.3f} {row['achieved_rps']:9.1f} {row['error_rate'] * 100:6.2f} "
                  f"{row.get('cpu_ms_per_req', 0):10.3f}")
    if "max_sustained_rps" in med:
        print(f"\nmax sustained RPS (p99 < {cfg['p99_bound_ms']:.0f} ms, no errors), median: "
              + ", ".join(f"{k} {v:.0f}" for k, v in med["max_sustained_rps"].items()))
        if "sustained_ratio_sovhub_vs_litellm" in med:
            print(f"sovhub / LiteLLM: {med['sustained_ratio_sovhub_vs_litellm']:.2f}x (target >= 3x)")


if __name__ == "__main__":
    main()
