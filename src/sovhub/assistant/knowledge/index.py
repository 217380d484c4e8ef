"""The in-process vector index: exact cosine search over a collection's matrix, cached per process.

pgvector is not packaged for this Debian release, so vectors stay in the database and each
process keeps one float32 matrix per collection. Search is exact: the float32 scan of a
collection is one matrix-vector product, but it reads the whole matrix (150 MB for 100,000 x
384; 25 ms on the shared development machine). Large collections therefore also keep an 8-bit
copy (faiss's scalar quantizer, a quarter of the bytes and a SIMD kernel): it picks a few
hundred candidates, which are re-scored in float32. The quantization error of every score is
bounded (:func:`_error_bound`), so when the k-th re-scored candidate beats the best score any
other row could reach, the answer is provably the exact top k; otherwise (rare) the float32
scan runs. An HNSW graph was measured and rejected (docs/benchmarks.md): a minute to build for
100,000 passages here, and it lost true neighbours. :meth:`VectorIndex.top` runs the search on a
worker thread (faiss and numpy release the GIL) while the caller runs the full-text query.

The cache is keyed by the collection's `generation` (bumped in the same transaction as every
ingest or delete), so a change made by another process, e.g. `sovhub kb ingest` while the
server runs, is seen on the very next search.
"""

from __future__ import annotations

import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..tables import KbChunk

__all__ = ["COARSE_MIN_ROWS", "VectorIndex", "VectorMatrix", "build_coarse"]

# Below this many passages the float32 scan takes a few milliseconds: no 8-bit copy is kept.
COARSE_MIN_ROWS = 20_000
# Candidates re-scored in float32: at least this many, and at least OVERSAMPLE times k. With 500,
# the exactness check passed for 100/100 queries on 100,000 random and 99/100 on clustered vectors.
MIN_CANDIDATES = 500
OVERSAMPLE = 10


@dataclass(frozen=True, slots=True)
class Coarse:
    """An 8-bit copy of a matrix and the per-dimension width of its quantization step."""

    index: Any  # faiss.IndexScalarQuantizer
    step: np.ndarray  # float32, (dim,)


def build_coarse(matrix: np.ndarray) -> Coarse:
    import faiss  # imported only for collections that need it

    quantized = faiss.IndexScalarQuantizer(matrix.shape[1], faiss.ScalarQuantizer.QT_8bit,
                                           faiss.METRIC_INNER_PRODUCT)
    quantized.train(matrix)  # per-dimension min and max: the 256 levels span exactly that range
    quantized.add(matrix)
    step = ((matrix.max(axis=0) - matrix.min(axis=0)) / 255.0).astype(np.float32)
    return Coarse(quantized, step)


def _error_bound(query: np.ndarray, step: np.ndarray) -> float:
    # Each decoded component is within one step of the true one, so a score is off by at most
    # sum |q_d| * step_d (a full step: twice the rounding error, a margin for faiss's conventions).
    return float(np.abs(query) @ step) + 1e-4


@dataclass(frozen=True, slots=True)
class VectorMatrix:
    generation: int
    ids: np.ndarray  # int64, (n,)
    matrix: np.ndarray  # float32, (n, dim), rows L2-normalised
    coarse: Coarse | None = None

    def top(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The exact k nearest chunk ids by cosine similarity, best first."""
        if not len(self.ids) or k <= 0:
            return []
        k = min(k, len(self.ids))
        candidates = max(k * OVERSAMPLE, MIN_CANDIDATES)
        if self.coarse is not None and candidates < len(self.ids):
            hits = self._top_through_coarse(query, k, candidates, self.coarse)
            if hits is not None:
                return hits
        return self._top_exact(query, k)

    def _top_through_coarse(
        self, query: np.ndarray, k: int, candidates: int, coarse: Coarse
    ) -> list[tuple[int, float]] | None:
        approx, rows = coarse.index.search(query.reshape(1, -1), candidates)
        rows = rows[0][rows[0] >= 0]
        scores = self.matrix[rows] @ query
        order = np.argsort(-scores, kind="stable")[:k]
        # A row outside the candidates scores at most (the last candidate's approximate score + the
        # error bound); the k-th re-scored candidate must reach that, or the answer may not be exact.
        if scores[order[-1]] < float(approx[0][-1]) + _error_bound(query, coarse.step):
            return None
        return [(int(self.ids[rows[i]]), float(scores[i])) for i in order]

    def _top_exact(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        scores = self.matrix @ query
        # Partition on the scores themselves: negating 100,000 floats first would copy them.
        best = np.argpartition(scores, len(scores) - k)[-k:] if k < len(scores) else np.arange(len(scores))
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(int(self.ids[i]), float(scores[i])) for i in best]


class VectorIndex:
    """Matrices of every collection searched so far in this process, rebuilt when stale."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._matrices: dict[int, VectorMatrix] = {}
        # Threads start on demand; a few so that concurrent searches do not queue behind one scan.
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sovhub-kb-vectors")
        weakref.finalize(self, self._pool.shutdown, wait=False)

    def top(self, matrices: list[VectorMatrix], query: np.ndarray, k: int) -> Future[list[tuple[int, float]]]:
        """The k nearest chunk ids over these matrices, best first, computed on the index's worker thread."""
        return self._pool.submit(_top_of, matrices, query, k)

    def matrix(self, session: Session, collection_id: int, generation: int, dim: int) -> VectorMatrix:
        cached = self._matrices.get(collection_id)
        if cached is not None and cached.generation == generation:
            return cached
        # One loader at a time: concurrent searches after a change would otherwise all rebuild.
        with self._lock:
            cached = self._matrices.get(collection_id)
            if cached is not None and cached.generation == generation:
                return cached
            built = self._load(session, collection_id, generation, dim)
            self._matrices[collection_id] = built
            return built

    def invalidate(self, collection_id: int | None = None) -> None:
        with self._lock:
            if collection_id is None:
                self._matrices.clear()
            else:
                self._matrices.pop(collection_id, None)

    @staticmethod
    def _load(session: Session, collection_id: int, generation: int, dim: int) -> VectorMatrix:
        rows = session.execute(
            select(KbChunk.id, KbChunk.vector).where(KbChunk.collection_id == collection_id).order_by(KbChunk.id)
        ).all()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        return VectorMatrix(generation, ids, matrix, build_coarse(matrix) if len(rows) >= COARSE_MIN_ROWS else None)


def _top_of(matrices: list[VectorMatrix], query: np.ndarray, k: int) -> list[tuple[int, float]]:
    hits = [hit for matrix in matrices for hit in matrix.top(query, k)]
    if len(matrices) > 1:
        hits.sort(key=lambda hit: -hit[1])
    return hits[:k]
