"""The static encoder: word vectors distilled from multilingual-e5-small, for a sub-millisecond semantic stage.

The full e5 forward pass costs tens of milliseconds per message on a small CPU. Following the
Model2Vec idea, every word of a fixed vocabulary is embedded *once* by e5, and a message's vector
is then the frequency-weighted mean of its words' vectors — a dictionary look-up and a small sum.

* **Vocabulary.** The most frequent words of each supported language (``wordfreq``'s offline
  lists), every word of the exemplar bank and of the lexicons, and the single characters of the
  bank's Japanese text. Texts are split into words at non-letters; runs of Japanese script (no
  spaces) are segmented by greedy longest match against the vocabulary, falling back to single
  characters.
* **Pooling.** A message's vector is the smooth-inverse-frequency weighted mean of its words'
  vectors (``a / (a + p(word))`` with ``p`` from ``wordfreq``: "the", "de", "の" count for less
  than rare content words) next to their element-wise maximum, each half with the vocabulary's
  common direction removed (as in SIF sentence embeddings: vectors then differ in what they
  say, not in being text) and unit length; the whole is unit length.
* **Map into e5's space.** A ridge regression, fitted on the exemplar bank, maps these pooled
  features onto e5's own vector of the same text. The semantic guard then uses the classifier
  trained on e5's vectors (the one the ``e5`` mode uses): only the vectors of the texts being
  judged are approximated, never the bank.
* **Unknown words** (inflections, typos, new names) get the mean of their character 3- and
  4-gram vectors; each n-gram's vector (hashed into buckets) is the mean of the vectors of the
  vocabulary words that contain it, so "bombes" lands near "bombe".
* **Cache.** The table is built on first use and stored as ``static-<digest>.npz`` in the cache
  dir; the digest covers the recipe, the model, the wordfreq version, the vocabulary sizes and the
  bank and lexicon files, so any change rebuilds it. Word vectors are also kept in a store
  (``static-words-<model>.npz``) so a rebuild embeds only new words. An unreadable file is
  discarded and rebuilt. Nothing is downloaded; nothing trained ships in the repository.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .guards import normalize
from .semantic import DEFAULT_EXEMPLAR_DIR, TextEmbedder

__all__ = [
    "LANGUAGES",
    "STATIC_STYLES",
    "StaticEncoder",
    "StaticTable",
    "tokenize",
]

log = logging.getLogger("sovhub.safety")

RECIPE = "static/sif+meanmax+ngram+ridge-to-e5/v4"
LANGUAGES = ("en", "fr", "de", "es", "pl", "uk", "ar", "ja")
# The bank's exemplars this encoder learns from (its map into e5's space and its classifier):
# messages only. A mean of word vectors pictures a paragraph poorly; fitted with the bank's
# answer-style passages too, a protected-speech question read as S1 at 0.68 instead of 0.37 and
# the floor check refused the default policy.
STATIC_STYLES = ("message",)
# Words per language taken from wordfreq. The build embeds each word once with e5 (a few
# milliseconds each on a small CPU), so this bounds the first start-up: see docs/benchmarks.md.
DEFAULT_WORDS_PER_LANG = 2000
# Per-language overrides. Empty on purpose: 6,000 words for pl, uk and ar (rich inflection) raised
# recall but pushed false positives over 5% and doubled the build (docs/benchmarks.md).
WORDS_PER_LANG: dict[str, int] = {}
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
_TOKEN = re.compile(f"[{_CJK}]+|[^\\W_{_CJK}]+", re.UNICODE)
_CJK_RUN = re.compile(f"[{_CJK}]")
_DEFAULT_LEXICON_DIR = Path(__file__).parent / "data" / "lexicon"


def _split(text: str) -> list[str]:
    return _TOKEN.findall(normalize(text).casefold())


def tokenize(text: str, vocabulary: dict[str, int] | None = None) -> list[str]:
    """Words of ``text`` (normalised, case-folded); Japanese runs segmented against ``vocabulary``."""
    out: list[str] = []
    for token in _split(text):
        if not _CJK_RUN.match(token):
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


def _ngrams(word: str) -> list[int]:
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
                guess = self.ngrams[_ngrams(token)].sum(axis=0)
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


def _files_digest(dirs: Iterable[Path], pattern: str) -> bytes:
    h = hashlib.sha256()
    for folder in dirs:
        for path in sorted(folder.glob(pattern)):
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.digest()


class StaticEncoder:
    """A :class:`~sovhub.safety.semantic.TextEmbedder` over a :class:`StaticTable` built from ``embedder``."""

    def __init__(
        self,
        embedder: TextEmbedder,
        cache_dir: Path,
        *,
        model_id: str = "multilingual-e5-small",
        exemplar_dirs: Sequence[Path] | None = None,
        lexicon_dirs: Sequence[Path] | None = None,
        words_per_lang: int | dict[str, int] | None = None,
        languages: Sequence[str] = LANGUAGES,
    ) -> None:
        self.embedder = embedder
        self.cache_dir = cache_dir
        self.model_id = model_id
        self.exemplar_dirs = list(exemplar_dirs or [DEFAULT_EXEMPLAR_DIR])
        self.lexicon_dirs = list(lexicon_dirs) if lexicon_dirs is not None else [_DEFAULT_LEXICON_DIR]
        if words_per_lang is None:
            words_per_lang = {lang: WORDS_PER_LANG.get(lang, DEFAULT_WORDS_PER_LANG) for lang in languages}
        elif isinstance(words_per_lang, int):
            words_per_lang = dict.fromkeys(languages, words_per_lang)
        self.words_per_lang: dict[str, int] = {lang: words_per_lang.get(lang, 0) for lang in languages}
        self.languages = tuple(languages)
        self._table: StaticTable | None = None
        self._lock = threading.Lock()
        self.digest = self._digest()

    def _digest(self) -> str:
        h = hashlib.sha256()
        h.update(f"{RECIPE}\0{self.model_id}\0{_wordfreq_version()}\0".encode())
        h.update(",".join(f"{lang}={n}" for lang, n in self.words_per_lang.items()).encode())
        for folder in [*self.exemplar_dirs, *self.lexicon_dirs]:
            if not folder.is_dir():
                raise ConfigError(f"static encoder input not found: {folder}")
        h.update(_files_digest(self.exemplar_dirs, "*.jsonl"))
        h.update(_files_digest(self.lexicon_dirs, "*.yaml"))
        return h.hexdigest()

    @property
    def path(self) -> Path:
        return self.cache_dir / f"static-{self.digest[:20]}.npz"

    @property
    def table(self) -> StaticTable:
        if self._table is None:
            self.ensure_ready()
        assert self._table is not None
        return self._table

    def embed(self, texts: list[str], kind: str = "query") -> np.ndarray:
        """L2-normalised float32 vectors, (len(texts), d); ``kind`` is accepted for the interface."""
        table = self.table
        if not texts:
            return np.zeros((0, table.dim), dtype=np.float32)
        return np.stack([table.encode(t) for t in texts])

    def ensure_ready(self) -> Path:
        """Load the table for these inputs, building (and caching) it first when absent or unreadable."""
        with self._lock:
            if self._table is not None:
                return self.path
            if self.path.exists():
                try:
                    self._table = StaticTable.load(self.path, self.digest)
                    return self.path
                except (OSError, ValueError, KeyError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
                    log.warning("discarding unreadable static encoder table %s: %s", self.path, exc)
            from .static_build import build_table

            self._table = build_table(self)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}.npz")
            self._table.save(tmp)
            os.replace(tmp, self.path)
            return self.path


def _wordfreq_version() -> str:
    try:
        from importlib.metadata import version

        return version("wordfreq")
    except Exception:  # noqa: BLE001 - any metadata failure: the table is simply keyed as such
        return "absent"
