"""Knowledge base fixtures: a hub on SQLite and (when configured) PostgreSQL, with the real embedder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sovhub.assistant.knowledge import KnowledgeBase
from sovhub.hub import Hub, build_hub
from tests.conftest import make_settings

# Real multilingual-e5 vectors, computed once per distinct text for the whole run: the tests ingest
# the same small documents many times, and the model takes ~0.1-0.5 s per passage on a busy CPU.
_VECTORS: dict[tuple[str, str], np.ndarray] = {}


def remember_embeddings(hub: Hub) -> None:
    real = hub.embedder.embed

    def embed(texts: list[str], kind: str = "passage") -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if (kind, t) not in _VECTORS]
        if missing:
            for text, vector in zip(missing, real(missing, kind=kind), strict=True):
                _VECTORS[(kind, text)] = vector
        return np.stack([_VECTORS[(kind, t)] for t in texts])

    hub.embedder.embed = embed  # type: ignore[method-assign]


@pytest.fixture
def db_hub(database_url: str | None, data_dir: Path) -> Iterator[Hub]:
    """A migrated hub on each database the run has (SQLite always; PostgreSQL when configured)."""
    hub = build_hub(make_settings(data_dir, database_url=database_url))
    remember_embeddings(hub)
    yield hub
    hub.close()


@pytest.fixture
def kb(db_hub: Hub) -> KnowledgeBase:
    return db_hub.services.get(KnowledgeBase)
