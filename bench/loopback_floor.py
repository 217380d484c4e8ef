"""The machine's floor for an HTTP gateway: a trivial raw-ASGI app under uvicorn, same load generator.

It answers every POST with a fixed `chat.completion` (no framework, no upstream), pinned to CPU 1
like the gateways in gateway_bench.py, so its CPU per request is what this machine's loopback
networking and uvicorn cost before any gateway does any work.

    .venv/bin/python bench/loopback_floor.py --rate 100 --runs 3     # writes bench/results/loopback-floor.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from procs import BENCH, PYTHON, cpu_seconds, free_port, machine_info, pinned, write_result

BODY = json.dumps({
    "id": "floor", "object": "chat.completion", "created": 0, "model": "mock-model",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop",
                 "logprobs": None}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}).encode()


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--name", default="loopback-floor", help="result file name under bench/results/")
    args = parser.parse_args()
    info = machine_info()
    pin = (os.cpu_count() or 1) >= 2
    port = free_port()
    server = subprocess.Popen(
        pinned([PYTHON, "-m", "uvicorn", "loopback_floor:app", "--port", str(port), "--log-level", "warning",
                "--no-access-log"], "1" if pin else None), cwd=BENCH)
    try:
        time.sleep(3)
        runs = []
        for _ in range(args.runs):
            c0 = cpu_seconds(server.pid)
            out = subprocess.run(
                pinned([PYTHON, str(BENCH / "loadgen.py"), "--url", f"http://127.0.0.1:{port}/v1/chat/completions",
                        "--rate", str(args.rate), "--duration", str(args.duration), "--warmup", "1", "--key", "x"],
                       "0" if pin else None), capture_output=True, text=True, check=True)
            step = json.loads(out.stdout)
            step["cpu_ms_per_req"] = (cpu_seconds(server.pid) - c0) * 1000 / (args.rate * (args.duration + 1))
            runs.append(step)
            print(f"  {args.rate:.0f} RPS: cpu/req {step['cpu_ms_per_req']:.3f} ms p50 {step['p50_ms']:.3f} "
                  f"p99 {step['p99_ms']:.3f} ms", flush=True)
        medians = {k: round(statistics.median(r[k] for r in runs), 3) for k in ("cpu_ms_per_req", "p50_ms", "p99_ms")}
        print(f"median: cpu/req {medians['cpu_ms_per_req']:.3f} ms, p50 {medians['p50_ms']:.3f} ms, "
              f"p99 {medians['p99_ms']:.3f} ms")
        out = write_result(args.name, {
            "benchmark": "loopback floor: a raw ASGI app under uvicorn, pinned like the gateways",
            "machine": info, "config": {"rate": args.rate, "duration_s": args.duration, "runs": args.runs,
                                        "pinned": pin},
            "runs": runs, "medians": medians,
        })
        print(f"wrote {out}")
    finally:
        server.terminate()
        server.wait(10)
    sys.exit(0)


if __name__ == "__main__":
    main()
