"""The in-process vector index: exact top-k, merged across collections, scanned off the caller's thread."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from sovhub.assistant.knowledge import KnowledgeBase
from sovhub.assistant.knowledge import index as index_module
from sovhub.assistant.knowledge.index import MIN_CANDIDATES, Coarse, VectorIndex, VectorMatrix, build_coarse

PASSAGES = [
    "Waste collection happens every Tuesday; recycling bins are emptied every second Friday.",
    "A fishing licence costs twelve euros per year and is issued at the harbour office.",
    "Every resident may borrow books with a free library card from the city library.",
    "Register a vehicle within ten days of buying it; bring the purchase contract.",
    "Building permits are requested online and take about thirty working days.",
    "Parking permits for residents are renewed every year at the town hall.",
    "Child benefit is paid monthly; apply within three months of the birth.",
    "Passports are issued in about twenty working days; bring an old passport and a photo.",
]


def _matrix(n: int, seed: int, first_id: int = 1, dim: int = 32) -> VectorMatrix:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return VectorMatrix(1, np.arange(first_id, first_id + n, dtype=np.int64), vectors)


def _query(seed: int, dim: int = 32) -> np.ndarray:
    q = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return q / np.linalg.norm(q)


@pytest.mark.parametrize("k", [1, 7, 50, 499, 500, 900])
def test_top_is_the_exact_k_best_in_order(k: int) -> None:
    m, q = _matrix(500, 1), _query(2)
    scores = m.matrix @ q
    expected = [int(m.ids[i]) for i in np.argsort(-scores, kind="stable")[: min(k, 500)]]
    hits = m.top(q, k)
    assert [cid for cid, _ in hits] == expected
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert hits[0][1] == pytest.approx(float(scores.max()))


def test_top_of_nothing() -> None:
    empty = VectorMatrix(0, np.zeros(0, dtype=np.int64), np.zeros((0, 32), dtype=np.float32))
    assert empty.top(_query(1), 5) == []
    assert _matrix(10, 1).top(_query(1), 0) == []


def test_index_merges_collections_best_first_on_its_own_thread() -> None:
    a, b, q = _matrix(300, 3, first_id=1), _matrix(300, 4, first_id=1000), _query(5)
    index = VectorIndex()
    caller = threading.get_ident()
    seen: list[int] = []

    class Recording(VectorMatrix):
        def top(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
            seen.append(threading.get_ident())
            return super().top(query, k)

    recorded = Recording(a.generation, a.ids, a.matrix)
    merged = index.top([recorded, b], q, 20).result(timeout=10)
    both = np.concatenate([a.matrix, b.matrix]) @ q
    ids = np.concatenate([a.ids, b.ids])
    assert [cid for cid, _ in merged] == [int(ids[i]) for i in np.argsort(-both, kind="stable")[:20]]
    assert {cid >= 1000 for cid, _ in merged} == {True, False}  # both collections contribute here
    assert seen and caller not in seen  # the scan ran while the caller was free for the full-text query
    assert index.top([], q, 5).result(timeout=10) == []
    assert index.top([a], q, 5).result(timeout=10) == a.top(q, 5)


def test_the_8_bit_copy_gives_the_exact_answer_and_proves_it() -> None:
    m = _matrix(4000, 6, dim=64)
    coarse = build_coarse(m.matrix)
    quick = VectorMatrix(m.generation, m.ids, m.matrix, coarse)
    proven = 0
    for seed in range(30):
        # Queries near a stored passage, as real questions are near their answer.
        q = m.matrix[seed * 7] + 0.5 * _query(100 + seed, dim=64)
        q = (q / np.linalg.norm(q)).astype(np.float32)
        assert [cid for cid, _ in quick.top(q, 20)] == [cid for cid, _ in m.top(q, 20)]
        if quick._top_through_coarse(q, 20, MIN_CANDIDATES, coarse) is not None:
            proven += 1
    assert proven >= 25  # the float32 re-scan is the exception, not the rule


def test_without_a_proof_the_float32_scan_answers() -> None:
    m = _matrix(4000, 7, dim=64)
    real = build_coarse(m.matrix)
    # A step this wide bounds nothing: no candidate set can be proven to hold the top k.
    loose = Coarse(real.index, np.ones(64, dtype=np.float32))
    quick = VectorMatrix(m.generation, m.ids, m.matrix, loose)
    q = _query(8, dim=64)
    assert quick._top_through_coarse(q, 20, MIN_CANDIDATES, loose) is None
    assert quick.top(q, 20) == m.top(q, 20)
    # With k so large that the candidates would be every row, the 8-bit copy is not consulted.
    assert [cid for cid, _ in quick.top(q, 450)] == [cid for cid, _ in m.top(q, 450)]


def test_large_collections_search_through_the_8_bit_copy_with_the_same_hits(
    kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i, text in enumerate(PASSAGES):
        kb.ingest_bytes(f"p{i}.txt", text.encode(), "city")
    questions = ["When is the rubbish collected?", "How much is a fishing licence?", "library card"]
    # As if the collection were large: the next load (after a change) keeps an 8-bit copy.
    monkeypatch.setattr(index_module, "COARSE_MIN_ROWS", 1)
    monkeypatch.setattr(index_module, "MIN_CANDIDATES", 2)
    monkeypatch.setattr(index_module, "OVERSAMPLE", 1)
    monkeypatch.setattr(kb.settings, "kb_candidates", 5)
    plain = [[h.chunk_id for h in kb.search(q, collection="city", k=3)] for q in questions]
    through_coarse = VectorMatrix._top_through_coarse
    answered: list[bool] = []

    def spy(self: VectorMatrix, *args: Any) -> list[tuple[int, float]] | None:
        hits = through_coarse(self, *args)
        answered.append(hits is not None)
        return hits

    monkeypatch.setattr(VectorMatrix, "_top_through_coarse", spy)
    kb.index.invalidate()
    assert [[h.chunk_id for h in kb.search(q, collection="city", k=3)] for q in questions] == plain
    (matrix,) = kb.index._matrices.values()
    assert matrix.coarse is not None and len(answered) == len(questions)
    # Deleting a document still takes it out of retrieval at once.
    gone = kb.search(questions[0], collection="city", k=1)[0]
    kb.delete_document(gone.document_id)
    assert gone.chunk_id not in {h.chunk_id for h in kb.search(questions[0], collection="city", k=5)}
