"""The in-process vector index: exact cosine search over a collection's matrix, cached per process.

pgvector is not packaged for this Debian release, so vectors stay in the database and each
process keeps one float32 matrix per collection. Exact search is a single matrix-vector
product: about 5 ms for 100,000 x 384 on one core, with no recall loss and no index to tune.
The cache is keyed by the collection's `generation` (bumped in the same transaction as every
ingest or delete), so a change made by another process, e.g. `sovhub kb ingest` while the
server runs, is seen on the very next search.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..tables import KbChunk

__all__ = ["VectorIndex", "VectorMatrix"]


@dataclass(frozen=True, slots=True)
class VectorMatrix:
    generation: int
    ids: np.ndarray  # int64, (n,)
    matrix: np.ndarray  # float32, (n, dim), rows L2-normalised

    def top(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The k nearest chunk ids by cosine similarity, best first."""
        if not len(self.ids) or k <= 0:
            return []
        scores = self.matrix @ query
        k = min(k, len(scores))
        best = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(int(self.ids[i]), float(scores[i])) for i in best]


class VectorIndex:
    """Matrices of every collection searched so far in this process, rebuilt when stale."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._matrices: dict[int, VectorMatrix] = {}

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

    def _load(self, session: Session, collection_id: int, generation: int, dim: int) -> VectorMatrix:
        rows = session.execute(
            select(KbChunk.id, KbChunk.vector).where(KbChunk.collection_id == collection_id).order_by(KbChunk.id)
        ).all()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        return VectorMatrix(generation, ids, matrix)
