"""Batches: throughput on the embedded model, interactive time to first token while a batch runs vs idle, and the
carbon-aware scheduler on a synthetic 48-hour forecast vs running at once.

One `sovhub serve` (embedded SmolLM2-135M, the default guards) driven by the official `openai` SDK. Each round:

- idle: `--probes` streamed chat requests one after another (max_tokens 8), TTFT = call to first content chunk;
- batch alone: a batch of `--lines` chat lines (max_tokens `--line-tokens`), lines per minute from
  `in_progress_at` to `completed_at`;
- batch + probes: a batch three times as long, and the same probes while it runs.

Modes, each its own hub, rounds interleaved: ``stop`` (sovhub's default: batch lines in their own process, its
own llama.cpp, stopped with SIGSTOP while interactive requests use the model and resumed 3 s after the last,
see docs/batch.md), ``grace`` (batch lines in-process, in a background lane, preempted by interactive requests,
with the 3 s grace; ``batch.embedded_process = false``), ``preempt`` (the same without the grace) and ``fifo``,
the peer pattern of a gateway without priorities (``batch.interactive_first = false``: batch lines queue with
interactive requests in arrival order).

The ratios (under batch / idle, p50 and p95) are computed per round (their median reported) and over all
probes of all rounds (pooled); rounds alternate idle and busy so that the machine's background load hits both
alike. Memory: resident and proportional set size (Pss counts the model's shared mapped pages once) of the hub
and of its batch process, read while the busy batch runs. The scheduler part is pure (no server): `plan_lines` on a
synthetic forecast (a daily solar dip and a windy second night), a 5,000-line batch submitted every 3 hours of
the first day, estimated emissions of the plan vs running at once.

    PYTHONPATH=src .venv/bin/python bench/batch_bench.py --rounds 3 --sovhub-env SOVHUB_SAFETY__ENABLED=false
    # writes bench/results/batch.json
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
from procs import machine_info, start_sovhub, write_result

from sovhub.batches.schedule import plan_lines
from sovhub.energy.intensity import IntensityPoint

MODEL = "smollm2-135m-instruct"


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def memory(pid: int) -> list[dict[str, Any]]:
    """Rss and Pss (MB) of the hub and each process it started (the batch process), from smaps_rollup."""
    out = []
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        children = []
    for p in [pid, *children]:
        try:
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines()[1:])
            cmd = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        out.append({"pid": p, "role": "batch process" if b"sovhub.backends.batch_child" in cmd else "hub",
                    "rss_mb": round(int(fields["Rss"].split()[0]) / 1024, 1),
                    "pss_mb": round(int(fields["Pss"].split()[0]) / 1024, 1)})
    return out


def ttft(base: str, key: str, n: int) -> float:
    body = {"model": MODEL, "stream": True, "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "user", "content": f"Probe {n}: name a colour."}]}
    started = time.perf_counter()
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=120,
                      headers={"authorization": f"Bearer {key}"}) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                return time.perf_counter() - started
    return time.perf_counter() - started


def probes(base: str, key: str, count: int, offset: int) -> list[float]:
    out = []
    for i in range(count):
        out.append(ttft(base, key, offset + i))
        time.sleep(0.2)  # people, not a load generator: a request every few hundred ms
    return out


def start_batch(client: openai.OpenAI, lines: int, tokens: int, tag: str) -> str:
    data = b"".join(json.dumps({"custom_id": f"{tag}-{i}", "method": "POST", "url": "/v1/chat/completions",
                                "body": {"model": MODEL, "max_tokens": tokens, "temperature": 0,
                                         "messages": [{"role": "user", "content": f"Line {i}: write a haiku."}]}}
                               ).encode() + b"\n" for i in range(lines))
    file_id = client.files.create(file=(f"{tag}.jsonl", io.BytesIO(data)), purpose="batch").id
    return client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h").id


def wait(client: openai.OpenAI, batch_id: str, statuses: set[str], timeout: float = 1800) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        time.sleep(0.25)
    raise RuntimeError(f"batch {batch_id} still {batch.status}")


MODES = {
    # sovhub's default: batch lines in their own process, stopped while interactive requests run, 3 s grace.
    "stop": {"SOVHUB_BATCH__INTERACTIVE_FIRST": "true", "SOVHUB_BATCH__INTERACTIVE_GRACE_S": "3",
             "SOVHUB_BATCH__EMBEDDED_PROCESS": "true"},
    # In-process: batch lines in a background lane, preempted by interactive requests; no grace.
    "preempt": {"SOVHUB_BATCH__INTERACTIVE_FIRST": "true", "SOVHUB_BATCH__INTERACTIVE_GRACE_S": "0",
                "SOVHUB_BATCH__EMBEDDED_PROCESS": "false"},
    # The same, and the lane stays closed for the default grace after each interactive request.
    "grace": {"SOVHUB_BATCH__INTERACTIVE_FIRST": "true", "SOVHUB_BATCH__INTERACTIVE_GRACE_S": "3",
              "SOVHUB_BATCH__EMBEDDED_PROCESS": "false"},
    # The peer pattern (a gateway without priorities): batch lines queue with interactive requests, FIFO.
    "fifo": {"SOVHUB_BATCH__INTERACTIVE_FIRST": "false"},
}


def measure_round(client: openai.OpenAI, base: str, key: str, args: argparse.Namespace, r: int,
                  mode: str, pid: int) -> dict[str, Any]:
    idle = probes(base, key, args.probes, r * 1000)
    alone_id = start_batch(client, args.lines, args.line_tokens, f"{mode}-alone{r}")
    alone = wait(client, alone_id, {"completed", "failed", "expired"})
    lines_per_min = args.lines / max(1e-9, (alone.completed_at - alone.in_progress_at) / 60)
    busy_id = start_batch(client, args.lines * 3, args.line_tokens, f"{mode}-busy{r}")
    wait(client, busy_id, {"in_progress"})
    time.sleep(1.0)
    busy = probes(base, key, args.probes, r * 1000 + 500)
    mem = memory(pid)
    still = client.batches.retrieve(busy_id)
    ran_during = still.request_counts.completed if still.request_counts else 0
    try:
        client.batches.cancel(busy_id)
    except openai.ConflictError:  # it finished during the probes (fifo): nothing left to cancel
        pass
    wait(client, busy_id, {"cancelled", "completed"})
    out = {"idle_ttft_s": idle, "busy_ttft_s": busy, "lines_per_min": lines_per_min, "alone_status": alone.status,
           "busy_lines_done_during_probes": ran_during, "idle_p95_s": p95(idle), "busy_p95_s": p95(busy),
           "p95_ratio": p95(busy) / p95(idle), "idle_p50_s": statistics.median(idle),
           "busy_p50_s": statistics.median(busy), "p50_ratio": statistics.median(busy) / statistics.median(idle),
           "memory": mem, "loadavg_1m": os.getloadavg()[0]}
    print(f"{mode} round {r + 1}: idle p50/p95 {out['idle_p50_s'] * 1000:.0f}/{p95(idle) * 1000:.0f} ms, under "
          f"batch {out['busy_p50_s'] * 1000:.0f}/{p95(busy) * 1000:.0f} ms (x{out['p50_ratio']:.3f}/"
          f"x{out['p95_ratio']:.3f}); batch alone {lines_per_min:.1f} lines/min; {ran_during} lines ran during "
          f"the probes; memory {mem}; load {out['loadavg_1m']:.1f}", flush=True)
    return out


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    idle = [t for rd in rounds for t in rd["idle_ttft_s"]]
    busy = [t for rd in rounds for t in rd["busy_ttft_s"]]
    return {"rounds": rounds,
            "p50_ratio_median": statistics.median(rd["p50_ratio"] for rd in rounds),
            "pooled_idle_p50_s": statistics.median(idle), "pooled_busy_p50_s": statistics.median(busy),
            "pooled_p50_ratio": statistics.median(busy) / statistics.median(idle),
            "pooled_idle_p95_s": p95(idle), "pooled_busy_p95_s": p95(busy),
            "pooled_p95_ratio": p95(busy) / p95(idle),
            "lines_per_min_median": statistics.median(rd["lines_per_min"] for rd in rounds),
            "idle_p95_s_median": statistics.median(rd["idle_p95_s"] for rd in rounds),
            "busy_p95_s_median": statistics.median(rd["busy_p95_s"] for rd in rounds),
            "p95_ratio_median": statistics.median(rd["p95_ratio"] for rd in rounds),
            "busy_lines_done_median": statistics.median(rd["busy_lines_done_during_probes"] for rd in rounds)}


def serve_part(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One hub per mode, both up for the whole run; rounds alternate the modes (order rotating), so the machine's
    background load falls on both alike. The hub not being measured is idle."""
    modes = args.modes.split(",")
    hubs = {}
    try:
        for mode in modes:
            env = {"SOVHUB_BATCH__POLL_INTERVAL_S": "0.2", "SOVHUB_EMBEDDED_MAX_TOKENS": "64",
                   **dict(kv.split("=", 1) for kv in args.sovhub_env), **MODES[mode]}
            hubs[mode] = start_sovhub(workdir, mock_port=None, embedded=True, env=env, name=f"sovhub-{mode}")
        clients = {}
        for mode, hub in hubs.items():
            base, key = f"http://127.0.0.1:{hub.port}", str(hub.key)
            clients[mode] = (openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0), base, key)
            probes(base, key, 3, 10_000)  # warm-up
        rounds: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
        for r in range(args.rounds):
            order = modes[r % len(modes):] + modes[:r % len(modes)]
            for mode in order:
                client, base, key = clients[mode]
                rounds[mode].append(measure_round(client, base, key, args, r, mode, hubs[mode].pid))
        return {mode: {**summary(rounds[mode]), "startup_s": hubs[mode].extra.get("startup_s")} for mode in modes}
    finally:
        for hub in hubs.values():
            hub.stop()


def synthetic_forecast(start: datetime) -> list[IntensityPoint]:
    """48 hourly points: ~420 g at night, a solar dip to ~150 g at 13:00, a windy second night (~200 g)."""
    points = []
    for h in range(48):
        at = start + timedelta(hours=h)
        solar = max(0.0, math.sin(math.pi * (at.hour - 6) / 14)) if 6 <= at.hour <= 20 else 0.0
        wind = 180.0 if 24 + 20 <= h or 24 <= h <= 24 + 5 else 0.0
        points.append(IntensityPoint(at, round(420 - 270 * solar - wind, 1)))
    return points


def scheduler_part() -> dict[str, Any]:
    start = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)
    points = synthetic_forecast(start)
    runs = []
    for submit_h in range(0, 24, 3):
        now = start + timedelta(hours=submit_h, minutes=10)
        deadline = now + timedelta(hours=24) - timedelta(hours=2.4)  # the window less 10%
        plan = plan_lines(list(range(5000)), points, now=now, deadline=deadline, line_seconds=2.0,
                          lines_per_second_cap=0.5, wh_per_line=0.05, source="synthetic")
        s = plan.summary
        runs.append({"submitted": now.isoformat(), "strategy": s["strategy"],
                     "planned_g": s.get("estimated_co2e_g"), "at_once_g": s.get("run_at_once_co2e_g"),
                     "saved_pct": 100 * s["saved_co2e_g"] / s["run_at_once_co2e_g"] if s.get("run_at_once_co2e_g")
                     else 0.0, "windows": len(s["windows"])})
        print(f"submitted {now:%H:%M}: at once {s.get('run_at_once_co2e_g'):.2f} g, planned "
              f"{s.get('estimated_co2e_g'):.2f} g ({runs[-1]['saved_pct']:.1f}% less), {len(s['windows'])} windows",
              flush=True)
    return {"runs": runs, "saved_pct_median": statistics.median(r["saved_pct"] for r in runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--line-tokens", type=int, default=32)
    parser.add_argument("--modes", default="stop,grace,fifo",
                        help="Comma-separated: stop (sovhub: batch process, SIGSTOP), grace (in-process, preempted, "
                             "3 s grace), preempt (in-process, no grace), fifo (the peer).")
    parser.add_argument("--sovhub-env", action="append", default=[], metavar="KEY=VALUE",
                        help="A setting for the hubs under test (repeatable).")
    parser.add_argument("--skip-serve", action="store_true", help="Only the scheduler part (no server).")
    args = parser.parse_args()
    result: dict[str, Any] = {"machine": machine_info(), "command": " ".join(["bench/batch_bench.py", *sys.argv[1:]]),
                              "args": vars(args), "scheduler": scheduler_part()}
    if not args.skip_serve:
        with tempfile.TemporaryDirectory(prefix="batch-bench-") as tmp:
            result["serve"] = serve_part(args, Path(tmp))
        for mode, s in result["serve"].items():
            print(f"{mode}: throughput {s['lines_per_min_median']:.1f} lines/min; TTFT p95 idle "
                  f"{s['idle_p95_s_median'] * 1000:.0f} ms, under batch {s['busy_p95_s_median'] * 1000:.0f} ms "
                  f"(median ratio x{s['p95_ratio_median']:.3f}, pooled x{s['pooled_p95_ratio']:.3f}); p50 ratio "
                  f"median x{s['p50_ratio_median']:.3f}, pooled x{s['pooled_p50_ratio']:.3f}")
    print(f"wrote {write_result('batch', result)}")


if __name__ == "__main__":
    main()
