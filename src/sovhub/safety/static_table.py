"""The static encoder's table and the tokenizer its words come from (see :mod:`sovhub.safety.static`).

Shared by the encoder, which reads the table, and :mod:`sovhub.safety.static_build`, which builds it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sovhub import linear_re

from .guards import normalize

__all__ = [
    "CJK_RUN",
    "EMBED_BATCH",
    "NGRAM_BUCKETS",
    "SIF_A",
    "STATIC_STYLES",
    "StaticTable",
    "word_ngrams",
    "split_words",
    "tokenize",
]

# The bank's exemplars this encoder learns from (its map into e5's space and its classifier):
# messages only. A mean of word vectors pictures a paragraph poorly; fitted with the bank's
# answer-style passages too, a protected-speech question read as S1 at 0.68 instead of 0.37 and
# the floor check refused the default policy.
STATIC_STYLES = ("message",)
# Smooth inverse frequency: a / (a + p). 1e-2 rather than SIF's usual 1e-3, because here function
# words carry intent ("how do I", "I will") and must not vanish (chosen by cross-validation).
SIF_A = 1e-2
# An unknown word is rare: it weighs like a word of probability 0.
UNKNOWN_WEIGHT = 1.0
_HALF = 0.5**0.5
NGRAM_BUCKETS = 1 << 15
NGRAM_SIZES = (3, 4)
EMBED_BATCH = 64
# Longest vocabulary word tried when segmenting Japanese script.
_MAX_CJK_WORD = 6
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\u3005"
# RE2 has no class subtraction: a letter run is split at CJK runs afterwards (both linear).
_TOKEN = linear_re.compile(f"[{_CJK}]+|[{linear_re.ALNUM}]+")
_CJK_SPLIT = linear_re.compile(f"[{_CJK}]+|[^{_CJK}]+")
CJK_RUN = linear_re.compile(f"[{_CJK}]")


def split_words(text: str) -> list[str]:
    out: list[str] = []
    for token in _TOKEN.findall(normalize(text).casefold()):
        out.extend(_CJK_SPLIT.findall(token) if CJK_RUN.search(token) else (token,))
    return out


def tokenize(text: str, vocabulary: dict[str, int] | None = None) -> list[str]:
    """Words of ``text`` (normalised, case-folded); Japanese runs segmented against ``vocabulary``."""
    out: list[str] = []
    for token in split_words(text):
        if not CJK_RUN.match(token):
            out.append(token)
            continue
        i = 0
        while i < len(token):
            for j in range(min(len(token), i + _MAX_CJK_WORD), i, -1):
                if j == i + 1 or (vocabulary is not None and token[i:j] in vocabulary):
                    out.append(token[i:j])
                    i = j
                    break
    return out


def word_ngrams(word: str) -> list[int]:
    padded = f"<{word}>"
    grams = {padded[i : i + n] for n in NGRAM_SIZES for i in range(max(len(padded) - n + 1, 0))}
    if not grams:
        grams = {padded}
    return [zlib.crc32(g.encode("utf-8", "replace")) % NGRAM_BUCKETS for g in sorted(grams)]


@dataclass
class StaticTable:
    """The built encoder: word vectors and weights, n-gram fallback vectors, common direction."""

    words: list[str]
    vectors: np.ndarray  # (n, d) float32, L2-normalised e5 vectors of the words
    weights: np.ndarray  # (n,) SIF weights
    ngrams: np.ndarray  # (NGRAM_BUCKETS, d) float32
    common: np.ndarray  # (d,) unit vector removed from message vectors
    empty: np.ndarray  # (d,) the vector of a text with no word
    digest: str
    # (2d + 1, d) least-squares map from pooled features (+ bias) into e5's own space, or None.
    projection: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.index = {w: i for i, w in enumerate(self.words)}

    @property
    def dim(self) -> int:
        """Size of the vectors :meth:`encode` returns."""
        if self.projection is not None:
            return int(self.projection.shape[1])
        return 2 * int(self.vectors.shape[1])

    def _unit(self, v: np.ndarray) -> np.ndarray:
        v = v - (v @ self.common) * self.common
        norm = float(np.linalg.norm(v))
        if norm > 1e-9:
            return v / norm
        # Nothing left but the common direction: read it as a text with no word.
        v = self.empty - (self.empty @ self.common) * self.common
        return v / max(float(np.linalg.norm(v)), 1e-12)

    def encode(self, text: str) -> np.ndarray:
        """The text's vector: its pooled features mapped into e5's space (unit length)."""
        features = self.features(text)
        if self.projection is None:
            return features
        mapped = np.asarray(features @ self.projection[:-1] + self.projection[-1], dtype=np.float32)
        return mapped / np.float32(max(float(np.linalg.norm(mapped)), 1e-12))

    def features(self, text: str) -> np.ndarray:
        """Mean- and max-pooled word vectors of ``text``, before the map (unit length)."""
        tokens = tokenize(text, self.index)
        rows: list[np.ndarray] = []
        weights: list[float] = []
        for token in tokens:
            at = self.index.get(token)
            if at is not None:
                rows.append(self.vectors[at])
                weights.append(float(self.weights[at]))
            else:
                guess = self.ngrams[word_ngrams(token)].sum(axis=0)
                norm = float(np.linalg.norm(guess))
                if norm > 1e-6:  # no n-gram of the word is known: nothing to say about it
                    rows.append(guess / norm)
                    weights.append(UNKNOWN_WEIGHT)
        if not rows:
            rows, weights = [self.empty], [1.0]
        matrix = np.stack(rows)
        # The weighted mean says what the text is about; the max keeps a single strong word
        # ("poison") from being averaged away in a long sentence.
        mean = self._unit(np.asarray(weights, dtype=np.float32) @ matrix)
        peak = self._unit(matrix.max(axis=0))
        return np.concatenate([mean, peak]).astype(np.float32) * np.float32(_HALF)

    def save(self, path: Path) -> None:
        with path.open("wb") as fh:
            np.savez(
                fh, words=np.array(self.words, dtype=str), vectors=self.vectors.astype(np.float16),
                weights=self.weights, ngrams=self.ngrams.astype(np.float16), common=self.common, empty=self.empty,
                digest=np.str_(self.digest),
                projection=self.projection if self.projection is not None else np.zeros((0, 0), dtype=np.float32),
            )

    @classmethod
    def load(cls, path: Path, digest: str) -> StaticTable:
        with np.load(path, allow_pickle=False) as z:
            table = cls(
                words=[str(w) for w in z["words"]], vectors=z["vectors"].astype(np.float32),
                weights=z["weights"].astype(np.float32), ngrams=z["ngrams"].astype(np.float32),
                common=z["common"].astype(np.float32), empty=z["empty"].astype(np.float32), digest=str(z["digest"]),
                projection=z["projection"].astype(np.float32) if z["projection"].size else None,
            )
        if table.digest != digest or table.vectors.shape[0] != len(table.words) or not len(table.words):
            raise ValueError("static table does not match its inputs")
        d = table.vectors.shape[1]
        if table.ngrams.shape != (NGRAM_BUCKETS, d) or not np.all(np.isfinite(table.vectors)):
            raise ValueError("static table is damaged")
        if table.projection is not None and (table.projection.shape != (2 * d + 1, d)
                                             or not np.all(np.isfinite(table.projection))):
            raise ValueError("static table's projection is damaged")
        return table
