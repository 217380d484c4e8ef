"""Knowledge base benchmarks: hybrid retrieval latency on 100,000 passages, and ingestion throughput.

    .venv/bin/python bench/retrieval_bench.py        # both, SQLite in a temp dir; writes bench/results/retrieval.json
    .venv/bin/python bench/retrieval_bench.py --only retrieval --chunks 100000 --runs 3
    .venv/bin/python bench/retrieval_bench.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Retrieval: the 100,000 passages have synthetic text (Zipf-distributed words, so full text has
realistic posting lists) and random unit vectors. Embedding 100,000 real passages would take
hours on a CPU and would not change the search cost, which depends on the count and dimension
only. Reported: p50/p95 of `KnowledgeBase.search` (a) with the query vectors computed
beforehand, i.e. the retrieval itself (full text + vector search + fusion + loading hits), and
(b) end to end, query embedding included; and side by side the naive peer, a per-query SQL scan
of every vector (what a hub without an in-process index does).

Ingestion: real PDFs made of several-hundred-word pages, real multilingual-e5 embeddings,
reported as pages per minute. Each run is repeated; medians are reported.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, select, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench"))

from procs import machine_info, write_result  # noqa: E402
from tests.assistant.pdfgen import make_pdf  # noqa: E402

from sovhub.assistant.knowledge import KnowledgeBase, lexical  # noqa: E402
from sovhub.assistant.tables import KbChunk, KbCollection, KbDocument  # noqa: E402
from sovhub.hub import Hub, build_hub  # noqa: E402
from sovhub.settings import load_settings  # noqa: E402
from sovhub.store.base import utcnow  # noqa: E402

DIM = 384
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def vocabulary(size: int, rng: random.Random) -> list[str]:
    """Random words of 2-11 letters; shuffled, so frequent (Zipf-ranked) words are short and long alike."""
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(LETTERS) for _ in range(rng.randint(2, 11))))
    out = sorted(words)
    rng.shuffle(out)
    return out


def zipf_words(vocab: list[str], n: int, rng: np.random.Generator) -> list[str]:
    ranks = np.minimum(rng.zipf(1.2, size=n), len(vocab)) - 1
    return [vocab[i] for i in ranks]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def populate(hub: Hub, chunks: int, seed: int) -> tuple[int, list[str]]:
    """Bulk-load `chunks` synthetic passages into collection 'bench'; returns (its id, vocabulary)."""
    rng = np.random.default_rng(seed)
    vocab = vocabulary(20_000, random.Random(seed))
    per_doc = 100
    now = utcnow()
    with hub.db.session() as s:
        collection = KbCollection(name="bench", embedding_model=hub.embedder.model_id, dim=DIM, generation=1)
        s.add(collection)
        s.flush()
        cid = collection.id
        docs = [
            {"collection_id": cid, "source": f"synthetic/{i}.pdf", "title": f"Document {i}",
             "media_type": "application/pdf", "content_hash": f"{i:064x}", "size_bytes": 0,
             "pages": per_doc // 4, "chunk_count": per_doc, "created_at": now, "updated_at": now}
            for i in range(chunks // per_doc)
        ]
        s.execute(insert(KbDocument), docs)
        doc_ids = list(s.scalars(select(KbDocument.id).where(KbDocument.collection_id == cid).order_by(KbDocument.id)))
    batch = 5_000
    for start in range(0, chunks, batch):
        n = min(batch, chunks - start)
        vectors = rng.standard_normal((n, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rows = []
        for j in range(n):
            i = start + j
            body = " ".join(zipf_words(vocab, 120, rng))
            rows.append({"document_id": doc_ids[i // per_doc], "collection_id": cid, "ordinal": i % per_doc,
                         "page": (i % per_doc) // 4 + 1, "char_start": 0, "char_end": len(body), "text": body,
                         "vector": vectors[j].tobytes()})
        with hub.db.session() as s:
            s.execute(insert(KbChunk), rows)
            ids = list(s.scalars(select(KbChunk.id).where(KbChunk.collection_id == cid).order_by(KbChunk.id)
                                 .offset(start).limit(n)))
            lexical.index_chunks(s, [(chunk_id, cid, r["text"]) for chunk_id, r in zip(ids, rows, strict=True)])
        print(f"  loaded {start + n:,} passages", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    return cid, vocab


def naive_scan(hub: Hub, collection_id: int, query_vector: np.ndarray, k: int) -> list[int]:
    """The peer: read every vector of the collection from SQL for each query, then rank them."""
    with hub.db.session() as s:
        rows = s.execute(text("SELECT id, vector FROM kb_chunks WHERE collection_id = :c"), {"c": collection_id}).all()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), DIM)
    scores = matrix @ query_vector
    return [int(ids[i]) for i in np.argsort(-scores)[:k]]


CPU_MS: list[float] = []  # CPU time of each timed call: what it costs when a core is free


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
        CPU_MS.append((time.process_time() - c0) * 1000)
    return out


def bench_retrieval(hub: Hub, chunks: int, queries: int, runs: int, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    collection_id, vocab = populate(hub, chunks, seed)
    collection = "bench"
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed + 1)
    # A question mixes common words with a few specific ones, like "how much is a fishing licence".
    texts = [" ".join(zipf_words(vocab, 2, rng) + [vocab[int(i)] for i in rng.integers(0, len(vocab), 3)])
             for _ in range(queries)]
    kb = hub.services.get(KnowledgeBase)
    real_embed = hub.embedder.embed
    query_vectors = {t: real_embed([t], kind="query") for t in texts}

    t0 = time.perf_counter()
    kb.search(texts[0], collection=collection, k=5)  # builds the matrix cache, as the first search after a change
    cold_ms = (time.perf_counter() - t0) * 1000

    def precomputed(batch: list[str], kind: str = "passage") -> np.ndarray:
        return query_vectors[batch[0]]

    results: dict[str, list[dict[str, float]]] = {
        "retrieval": [], "retrieval_cpu": [], "end_to_end": [], "naive_scan": [], "naive_scan_cpu": []}
    for run in range(runs):
        hub.embedder.embed = precomputed  # type: ignore[method-assign]
        CPU_MS.clear()
        lat = [timed(lambda t=t: kb.search(t, collection=collection, k=5), 1)[0] for t in texts]
        results["retrieval"].append({"p50": percentile(lat, 50), "p95": percentile(lat, 95)})
        results["retrieval_cpu"].append({"p50": percentile(CPU_MS, 50), "p95": percentile(CPU_MS, 95)})
        hub.embedder.embed = real_embed  # type: ignore[method-assign]
        subset = texts[: max(20, queries // 4)]
        lat = [timed(lambda t=t: kb.search(t, collection=collection, k=5), 1)[0] for t in subset]
        results["end_to_end"].append({"p50": percentile(lat, 50), "p95": percentile(lat, 95)})
        sample = texts[:10]
        CPU_MS.clear()
        lat = [timed(lambda t=t: naive_scan(hub, collection_id, query_vectors[t][0], 5), 1)[0] for t in sample]
        results["naive_scan"].append({"p50": percentile(lat, 50), "p95": percentile(lat, 95)})
        results["naive_scan_cpu"].append({"p50": percentile(CPU_MS, 50), "p95": percentile(CPU_MS, 95)})
        print(f"  run {run + 1}: " + ", ".join(f"{k} p95 {v[-1]['p95']:.1f} ms" for k, v in results.items()),
              file=sys.stderr)
        print(f"  load average (1 min): {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", file=sys.stderr)
    summary = {name: {q: statistics.median(r[q] for r in runs_) for q in ("p50", "p95")}
               for name, runs_ in results.items()}
    return {"chunks": chunks, "queries": queries, "runs": runs, "load_s": load_s, "cold_first_search_ms": cold_ms,
            "summary": summary, "per_run": results}


def page_text(rng: random.Random, words: int) -> str:
    base = ("Residents can apply for the permit online or at the service centre. The application takes about "
            "ten working days and the fee is paid by card. Bring an identity document and proof of address. "
            "Appeals against a decision must be lodged within one month of the date on the letter. ").split()
    out = []
    while len(out) < words:
        sentence = rng.sample(base, rng.randint(8, 16))
        out += sentence[:-1] + [sentence[-1].rstrip(".") + "."]
    return " ".join(out[:words])


def bench_ingestion(hub: Hub, pages: int, runs: int, seed: int) -> dict[str, Any]:
    kb = hub.services.get(KnowledgeBase)
    rng = random.Random(seed)
    per_run = []
    for run in range(runs):
        pdf = make_pdf([page_text(rng, 350) for _ in range(pages)], title=f"Guide {run}")
        t0 = time.perf_counter()
        result = kb.ingest_bytes(f"guide-{run}.pdf", pdf, "ingest-bench")
        elapsed = time.perf_counter() - t0
        per_run.append({"pages_per_min": pages / elapsed * 60, "chunks": result.chunks, "seconds": elapsed})
        print(f"  run {run + 1}: {pages} pages, {result.chunks} passages in {elapsed:.1f} s "
              f"= {per_run[-1]['pages_per_min']:.1f} pages/min", file=sys.stderr)
    return {"pages": pages, "runs": runs, "pages_per_min": statistics.median(r["pages_per_min"] for r in per_run),
            "chunks_per_page": statistics.median(r["chunks"] for r in per_run) / pages, "per_run": per_run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["retrieval", "ingestion"])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL; its kb_* tables are emptied first.")
    parser.add_argument("--name", default="retrieval", help="result file name under bench/results/")
    args = parser.parse_args()
    info = machine_info()
    result: dict[str, Any] = {"benchmark": "knowledge base: hybrid retrieval latency, ingestion throughput",
                              "machine": info, "config": {k: v for k, v in vars(args).items() if k != "database_url"}}
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(data_dir=tmp, embedded_enabled=False, database_url=args.database_url)
        hub = build_hub(settings)
        if args.database_url:
            with hub.db.session() as s:
                s.execute(text("DELETE FROM kb_collections"))
        try:
            print(f"database: {hub.db.engine.dialect.name}", file=sys.stderr)
            result["config"]["database"] = hub.db.engine.dialect.name
            if args.only in (None, "retrieval"):
                r = bench_retrieval(hub, args.chunks, args.queries, args.runs, args.seed)
                result["retrieval"] = r
                print(f"\nretrieval on {r['chunks']:,} passages ({r['queries']} queries x {r['runs']} runs, medians; "
                      f"load {r['load_s']:.0f} s, first search after a change {r['cold_first_search_ms']:.0f} ms)")
                for name, v in r["summary"].items():
                    print(f"  {name:<15} p50 {v['p50']:8.1f} ms   p95 {v['p95']:8.1f} ms")
                ratio = r["summary"]["naive_scan"]["p95"] / r["summary"]["retrieval"]["p95"]
                print(f"  naive scan / retrieval p95 ratio: {ratio:.1f}x")
                print(f"  load average (1, 5, 15 min) at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
            if args.only in (None, "ingestion"):
                i = bench_ingestion(hub, args.pages, args.runs, args.seed)
                result["ingestion"] = i
                print(f"\ningestion: {i['pages_per_min']:.1f} pages/min (median of {i['runs']} runs of {i['pages']} "
                      f"pages, {i['chunks_per_page']:.1f} passages per page, real embeddings)")
            result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
            print(f"wrote {write_result(args.name, result)}", file=sys.stderr)
        finally:
            if args.database_url:
                with hub.db.session() as s:
                    s.execute(text("DELETE FROM kb_collections"))
            hub.close()


if __name__ == "__main__":
    main()
