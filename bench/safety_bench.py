"""Latency of the default moderation pipeline (semantic + lexicon) per short message, and its accuracy.

    .venv/bin/python bench/safety_bench.py --runs 5 --eval tests/safety/data/eval.jsonl [--encoder static|e5]

Each run moderates every short message of the evaluation set once, one at a time, with the
embedding cache off (every message is embedded, as a new message would be). Reports per run
p50/p99 and the median over runs, the share of the embedding in it, then the evaluation.
"""

from __future__ import annotations

import os

# One BLAS thread, set before numpy loads OpenBLAS: the classifier's products are (1 x 384) by
# (384 x 1,610); with OpenBLAS' default threads they wait milliseconds for a second busy core
# (see "Where sovhub's time goes" in docs/benchmarks.md). SOVHUB_BENCH_BLAS_THREADS overrides.
os.environ["OPENBLAS_NUM_THREADS"] = os.environ.get("SOVHUB_BENCH_BLAS_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from sovhub.safety.cli import ENCODERS, build_default_moderator  # noqa: E402
from sovhub.safety.eval import evaluate, format_report, load_eval  # noqa: E402
from sovhub.safety.guards import normalize  # noqa: E402
from sovhub.settings import load_settings  # noqa: E402

SHORT = 200  # characters: a chat turn, a comment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--eval", type=Path, default=Path("tests/safety/data/eval.jsonl"))
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--encoder", choices=ENCODERS, default=None,
                        help="semantic encoder (default: the setting safety.semantic_encoder)")
    args = parser.parse_args()

    moderator = build_default_moderator(load_settings(), cache_size=0, encoder=args.encoder)
    print(f"semantic encoder: {type(moderator.semantic.embedder).__name__}")
    items = load_eval(args.eval)
    short = [i for i in items if len(i.text) <= SHORT]
    for item in short[:20]:  # warm caches, threads and branch predictors
        moderator.moderate(item.text, item.lang)

    p50s, p99s, embed_p50s, cpu_p50s, cpu_p99s = [], [], [], [], []
    for run in range(args.runs):
        total, embed, cpu = [], [], []
        for item in short:
            started, cpu_started = time.perf_counter(), time.process_time()
            moderator.moderate(item.text, item.lang)
            total.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - cpu_started) * 1000)
            started = time.perf_counter()
            moderator.semantic.embedder.embed([normalize(item.text)], kind="query")
            embed.append((time.perf_counter() - started) * 1000)
        p50s.append(float(np.percentile(total, 50)))
        p99s.append(float(np.percentile(total, 99)))
        embed_p50s.append(float(np.percentile(embed, 50)))
        cpu_p50s.append(float(np.percentile(cpu, 50)))
        cpu_p99s.append(float(np.percentile(cpu, 99)))
        print(f"run {run + 1}: {len(short)} messages  p50 {p50s[-1]:.2f} ms  p99 {p99s[-1]:.2f} ms  "
              f"(CPU time of the process: p50 {cpu_p50s[-1]:.2f} ms, p99 {cpu_p99s[-1]:.2f} ms; "
              f"embedding alone p50 {embed_p50s[-1]:.2f} ms)")
    # The same pipeline with the embedding cached: what everything but the e5 forward pass costs.
    cached = build_default_moderator(load_settings(), cache_size=100_000, encoder=args.encoder)
    for item in short:
        cached.moderate(item.text, item.lang)
    rest = []
    for item in short:
        started = time.perf_counter()
        cached.moderate(item.text, item.lang)
        rest.append((time.perf_counter() - started) * 1000)
    print(f"pipeline without the embedding (cached vectors): p50 {np.percentile(rest, 50):.3f} ms, "
          f"p99 {np.percentile(rest, 99):.3f} ms")
    load = os.getloadavg()[0]
    print(f"median of {args.runs} runs: p50 {statistics.median(p50s):.2f} ms, p99 {statistics.median(p99s):.2f} ms, "
          f"CPU p50 {statistics.median(cpu_p50s):.2f} ms, CPU p99 {statistics.median(cpu_p99s):.2f} ms, "
          f"embedding p50 {statistics.median(embed_p50s):.2f} ms; load average {load:.1f} on {os.cpu_count()} cores, "
          f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")

    if not args.skip_eval:
        print()
        print(format_report(evaluate(moderator.moderate, items)))


if __name__ == "__main__":
    main()
