"""What a question asks for, told by the multilingual embeddings: public-service facts, the person's
own records, or something a model may answer itself.

When no passage of the knowledge base passes the relevance floor, a model asked "How much is the
child benefit?" or "What is my name?" invents an answer (the bundled 135M model names the person
"Emmie"); asked for a greeting or a Python function it should simply answer. The question is
compared with the prototype questions of each kind (``question_kinds.json``, in the 8 languages:
greetings, coding, writing and know-how are ``chat``); a question goes to ``service`` or
``personal`` only when that kind's nearest prototypes are closer than the ``chat`` ones by
``MARGIN`` (calibrated on bench/data/grounded_eval.json, evaluated on the separate
bench/data/grounded_heldout.json: docs/benchmarks.md).

Usage::

    kinds = hub.services.get(QuestionKinds)
    kinds.kind("Скільки коштує посвідка на проживання?")   # "service"
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

__all__ = ["CHAT", "KINDS", "MARGIN", "PERSONAL", "PROTOTYPES", "SERVICE", "QuestionKinds", "load_prototypes"]

SERVICE = "service"
PERSONAL = "personal"
CHAT = "chat"
KINDS = (SERVICE, PERSONAL, CHAT)
PROTOTYPES = Path(__file__).with_name("question_kinds.json")
# Prototypes averaged per kind: the nearest few, so one odd prototype does not decide alone.
NEAREST = 3
# How much closer (mean cosine similarity) a fact-seeking kind must be than `chat` to win: the middle of
# the calibration set's gap (ordinary requests at most -0.015, fact-seeking questions at least +0.030).
MARGIN = 0.01


class TextEmbedder(Protocol):
    def embed(self, texts: list[str], kind: str = "passage") -> np.ndarray: ...


def load_prototypes(path: Path = PROTOTYPES) -> dict[str, list[str]]:
    """{kind: its prototype questions, every language together}."""
    data = json.loads(path.read_text(encoding="utf-8"))["kinds"]
    return {kind: [q for questions in data[kind].values() for q in questions] for kind in KINDS}


class QuestionKinds:
    """Built at start-up; the prototypes are embedded on first use (the embedding model loads only then)."""

    def __init__(self, embedder: TextEmbedder, prototypes: dict[str, list[str]] | None = None,
                 margin: float = MARGIN) -> None:
        self._embedder = embedder
        self._prototypes = prototypes if prototypes is not None else load_prototypes()
        self.margin = margin
        self._vectors: dict[str, np.ndarray] | None = None
        self._lock = threading.Lock()

    def _prototype_vectors(self) -> dict[str, np.ndarray]:
        with self._lock:
            if self._vectors is None:
                self._vectors = {kind: np.asarray(self._embedder.embed(questions, kind="query"), dtype=np.float32)
                                 for kind, questions in self._prototypes.items()}
            return self._vectors

    def scores(self, question: str) -> dict[str, float]:
        """Each kind's mean similarity of its NEAREST prototypes to `question`."""
        vectors = self._prototype_vectors()
        query = np.asarray(self._embedder.embed([question], kind="query")[0], dtype=np.float32)
        out = {}
        for kind, matrix in vectors.items():
            similarities = np.sort(matrix @ query)[::-1][:NEAREST]
            out[kind] = float(similarities.mean())
        return out

    def kind(self, question: str) -> str:
        """``service``, ``personal`` or ``chat`` (also for an empty question)."""
        if not question.strip():
            return CHAT
        scores = self.scores(question)
        best = max((SERVICE, PERSONAL), key=lambda k: scores[k])
        return best if scores[best] - scores[CHAT] > self.margin else CHAT
