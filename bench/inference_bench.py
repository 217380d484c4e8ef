"""Embedded inference: decode tokens/s and time to first token, sovhub's streaming API vs llama.cpp direct.

Both sides run the same GGUF (the bundled SmolLM2-135M-Instruct Q4_1), the same n_threads and
n_ctx=2048, the same prompts, max_tokens, seed and temperature 0, one request at a time and
alternating (direct, sovhub, direct, ...), so that background load hits both alike:

- direct: `llama_cpp.Llama(...).create_chat_completion(stream=True)` in this process;
- sovhub: `sovhub serve` (embedded model on, a fresh data dir) driven by the official `openai`
  SDK with `stream=True`;
- sovhub_http: the same server driven by a lean client (one `httpx` stream, SSE split by hand),
  so that the SDK's own per-call work can be told from the hub's. It is paired with its own
  direct run (direct_b) on a second prompt that differs from the first one at its first word:
  after the SDK request the hub's context already holds the first prompt, and llama.cpp would
  skip it.

TTFT is the time from the call to the first chunk carrying content; decode tokens/s counts the
content chunks after the first over the time from the first to the last one (one chunk is one
token on both sides). Each repetition's prompt starts with its own number, so llama.cpp's prefix
reuse cannot skip the prompt on either side.

    .venv/bin/python bench/inference_bench.py --reps 5     # writes bench/results/inference.json

Each repetition runs direct, sovhub, direct_b, sovhub_http in that order, then one lean-client
request to each `--variant` hub: a second `sovhub serve` with other settings (e.g. guards off),
so that two configurations are compared within the same repetitions rather than in runs minutes
apart. Besides the ratio of the medians, the result gives the median of the per-repetition
ratios (each repetition's sides ran within a second of each other, so slow drift cancels).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from procs import BENCH, Proc, machine_info, start_sovhub, write_result

from sovhub.backends.embedded import bundled_model_path

PROMPT = "Request {n}. Write a short story about a lighthouse keeper who finds a message in a bottle."
PROMPT_B = "Query {n}. Write a short story about a lighthouse keeper who finds a message in a bottle."
SIDES = ("direct", "sovhub", "direct_b", "sovhub_http")


def model_path() -> str:
    """The GGUF the hub serves by default: the same file on both sides."""
    return str(bundled_model_path())


def measure(chunks: Iterable[str | None], started: float) -> dict[str, Any]:
    """TTFT and decode rate from a stream of content deltas (None: a chunk without content)."""
    first = last = 0.0
    tokens = 0
    text = []
    for content in chunks:
        if not content:
            continue
        now = time.perf_counter()
        if tokens == 0:
            first = now
        last = now
        tokens += 1
        text.append(content)
    decode = (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0
    return {"ttft_ms": round((first - started) * 1000, 2), "tokens": tokens, "decode_tps": round(decode, 2),
            "total_s": round(last - started, 3), "text_head": "".join(text)[:60]}


def run_direct(llm: Any, n: int, args: argparse.Namespace, prompt: str = PROMPT) -> dict[str, Any]:
    started = time.perf_counter()
    stream = llm.create_chat_completion(
        messages=[{"role": "user", "content": prompt.format(n=n)}], max_tokens=args.max_tokens,
        temperature=0.0, seed=args.seed, stream=True,
    )
    return measure((c["choices"][0]["delta"].get("content") for c in stream if c["choices"]), started)


def run_sovhub(client: Any, n: int, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    stream = client.chat.completions.create(
        model=args.model, messages=[{"role": "user", "content": PROMPT.format(n=n)}], max_tokens=args.max_tokens,
        temperature=0.0, seed=args.seed, stream=True,
    )
    return measure((c.choices[0].delta.content if c.choices else None for c in stream), started)


def sse_contents(lines: Iterable[bytes]) -> Iterator[str | None]:
    """Content deltas from raw SSE bytes, as they arrive (no SDK, no models)."""
    buf = b""
    for data in lines:
        buf += data
        *events, buf = buf.split(b"\n\n")
        for event in events:
            if not event.startswith(b"data: "):
                continue
            if event == b"data: [DONE]":
                return
            choices = json.loads(event[6:]).get("choices") or [{}]
            yield (choices[0].get("delta") or {}).get("content")


def run_sovhub_http(http: Any, url: str, key: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    body = {"model": args.model, "messages": [{"role": "user", "content": PROMPT_B.format(n=n)}],
            "max_tokens": args.max_tokens, "temperature": 0.0, "seed": args.seed, "stream": True}
    started = time.perf_counter()
    with http.stream("POST", url, json=body, headers={"authorization": f"Bearer {key}"}) as response:
        response.raise_for_status()
        result = measure(sse_contents(response.iter_bytes()), started)
        result["overhead_ms"] = float(response.headers.get("x-sovhub-overhead-ms", "nan"))
    return result


def paired(runs: list[dict[str, Any]], base: str, side: str) -> float:
    """The median over repetitions of base TTFT / side TTFT."""
    return round(statistics.median(r[base]["ttft_ms"] / r[side]["ttft_ms"] for r in runs), 3)


def summarize(runs: list[dict[str, Any]], args: argparse.Namespace, info: dict[str, Any],
              startup_s: float | None) -> dict[str, Any]:
    variants = [f"hub:{name}" for name in args.variants]
    med = {side: {k: round(statistics.median(r[side][k] for r in runs), 2) for k in ("ttft_ms", "decode_tps",
                                                                                      "tokens")}
           for side in (*SIDES, *variants)}
    for side in ("sovhub_http", *variants):
        med[side]["overhead_ms"] = round(statistics.median(r[side]["overhead_ms"] for r in runs), 2)
    ratios = {
        "decode_tps_sovhub_over_direct": round(med["sovhub"]["decode_tps"] / med["direct"]["decode_tps"], 3),
        "ttft_direct_over_sovhub": round(med["direct"]["ttft_ms"] / med["sovhub"]["ttft_ms"], 3),
        "same_tokens_every_run": all(r["direct"]["text_head"] == r["sovhub"]["text_head"] for r in runs),
        "decode_tps_sovhub_http_over_direct_b": round(
            med["sovhub_http"]["decode_tps"] / med["direct_b"]["decode_tps"], 3),
        "ttft_direct_b_over_sovhub_http": round(med["direct_b"]["ttft_ms"] / med["sovhub_http"]["ttft_ms"], 3),
        "same_tokens_every_run_b": all(r["direct_b"]["text_head"] == r["sovhub_http"]["text_head"] for r in runs),
        "ttft_paired_median": paired(runs, "direct", "sovhub"),
        "ttft_paired_median_b": paired(runs, "direct_b", "sovhub_http"),
        **{f"ttft_paired_median_{side}": paired(runs, "direct_b", side) for side in variants},
        **{f"ttft_direct_b_over_{side}": round(med["direct_b"]["ttft_ms"] / med[side]["ttft_ms"], 3)
           for side in variants},
    }
    result = {
        "benchmark": "embedded inference", "machine": info,
        "config": {"reps": args.reps, "max_tokens": args.max_tokens, "seed": args.seed, "threads": args.threads,
                   "n_ctx": 2048, "model": args.model, "gguf": Path(model_path()).name, "temperature": 0.0,
                   "sovhub_startup_s": startup_s, "sovhub_env": args.sovhub_env, "variants": args.variants,
                   "rotate": args.rotate},
        "target": {"ratio_min": 0.95}, "median": med, "ratios": ratios, "runs": runs,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 1) - 1),
                        help="llama.cpp threads on both sides [default: the hub's own default, cores - 1]")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--name", default="inference")
    parser.add_argument("--sovhub-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for sovhub, e.g. SOVHUB_SAFETY__ENABLED=false")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE[,KEY=VALUE]",
                        help="one more hub, with this environment on top of --sovhub-env, measured in the same "
                             "repetitions, e.g. noguards:SOVHUB_SAFETY__ENABLED=false")
    parser.add_argument("--rotate", action="store_true",
                        help="start each repetition one side later (the order is otherwise fixed)")
    args = parser.parse_args()
    args.variants = {}
    for spec in args.variant:
        name, _, pairs = spec.partition(":")
        if not name or not pairs:
            parser.error(f"--variant {spec!r}: expected NAME:KEY=VALUE[,KEY=VALUE]")
        args.variants[name] = dict(kv.split("=", 1) for kv in pairs.split(","))

    import httpx
    from llama_cpp import Llama
    from openai import OpenAI

    info = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="sovhub-infbench-"))
    sov: Proc | None = None
    others: dict[str, Proc] = {}
    base_env = {"SOVHUB_EMBEDDED_THREADS": str(args.threads), "SOVHUB_EMBEDDED_CONTEXT": "2048",
                **dict(kv.split("=", 1) for kv in args.sovhub_env)}
    try:
        sov = start_sovhub(workdir, mock_port=None, embedded=True, env=base_env)
        for name, env in args.variants.items():
            others[name] = start_sovhub(workdir, mock_port=None, embedded=True, env={**base_env, **env})
        client = OpenAI(base_url=f"http://127.0.0.1:{sov.port}/v1", api_key=sov.key, max_retries=0, timeout=300)
        http = httpx.Client(timeout=300)
        url, key = f"http://127.0.0.1:{sov.port}/v1/chat/completions", sov.key or ""
        llm = Llama(model_path=model_path(), n_ctx=2048, n_threads=args.threads, verbose=False)
        run_direct(llm, -1, args)  # warm-up, unrecorded
        run_sovhub(client, -1, args)
        run_sovhub_http(http, url, key, -1, args)
        hub_urls = {name: (f"http://127.0.0.1:{p.port}/v1/chat/completions", p.key or "") for name, p in others.items()}
        for hub_url, hub_key in hub_urls.values():
            run_sovhub_http(http, hub_url, hub_key, -1, args)
        runs: list[dict[str, Any]] = []
        for n in range(args.reps):
            sides: list[tuple[str, Callable[[], dict[str, Any]]]] = [
                ("direct", partial(run_direct, llm, n, args)), ("sovhub", partial(run_sovhub, client, n, args)),
                ("direct_b", partial(run_direct, llm, n, args, PROMPT_B)),
                ("sovhub_http", partial(run_sovhub_http, http, url, key, n, args)),
                *((f"hub:{name}", partial(run_sovhub_http, http, hub_url, hub_key, n, args))
                  for name, (hub_url, hub_key) in hub_urls.items()),
            ]
            # Each repetition starts one side later: with a fixed order the position alone moved a
            # side's median TTFT by several percent (docs/benchmarks.md), so every side takes every place.
            shift = n % len(sides) if args.rotate else 0
            measured = {name: run() for name, run in sides[shift:] + sides[:shift]}
            pair = {name: measured[name] for name, _ in sides}
            runs.append(pair)
            # Written after every repetition, so a run cut short still leaves its measurements.
            write_result(args.name, summarize(runs, args, info, sov.extra.get("startup_s")))
            print(f"rep {n + 1}: " + "  ".join(
                f"{k} ttft {v['ttft_ms']:6.1f} ms {v['decode_tps']:5.1f} tok/s ({v['tokens']})"
                for k, v in pair.items()), flush=True)
        llm.close()
    finally:
        for proc in others.values():
            proc.stop()
        if sov is not None:
            sov.stop()

    result = summarize(runs, args, info, sov.extra.get("startup_s") if sov else None)
    med, ratios = result["median"], result["ratios"]
    out = write_result(args.name, result)
    print(f"\nmedian of {args.reps} runs, {args.threads} threads, max_tokens {args.max_tokens}")
    print(f"{'side':11s} {'TTFT ms':>9s} {'decode tok/s':>13s} {'tokens':>7s}")
    for side, row in med.items():
        print(f"{side:11s} {row['ttft_ms']:9.1f} {row['decode_tps']:13.1f} {row['tokens']:7.0f}")
    print(f"decode sovhub/direct {ratios['decode_tps_sovhub_over_direct']:.3f} (target >= 0.95); "
          f"TTFT direct/sovhub {ratios['ttft_direct_over_sovhub']:.3f}; same output: {ratios['same_tokens_every_run']}")
    print(f"lean HTTP client: decode sovhub_http/direct_b {ratios['decode_tps_sovhub_http_over_direct_b']:.3f}; "
          f"TTFT direct_b/sovhub_http {ratios['ttft_direct_b_over_sovhub_http']:.3f}; "
          f"same output: {ratios['same_tokens_every_run_b']}; "
          f"hub overhead header {med['sovhub_http']['overhead_ms']} ms")
    print(f"paired medians of per-repetition TTFT ratios: SDK {ratios['ttft_paired_median']:.3f}, "
          f"lean client {ratios['ttft_paired_median_b']:.3f}")
    for name in args.variants:
        side = f"hub:{name}"
        print(f"variant {name}: TTFT direct_b/{name} {ratios[f'ttft_direct_b_over_{side}']:.3f} (medians), "
              f"{ratios[f'ttft_paired_median_{side}']:.3f} (paired); decode {med[side]['decode_tps']} tok/s; "
              f"hub overhead header {med[side]['overhead_ms']} ms")
    print(f"written {out.relative_to(BENCH.parent)}")


if __name__ == "__main__":
    main()
