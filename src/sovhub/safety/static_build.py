"""Building the static encoder's table: vocabulary, one e5 pass per word, weights, n-gram fallback.

Run once per set of inputs (see :mod:`sovhub.safety.static`); the cost is one e5 forward pass per
new word, so it is reported in the log with the time it took.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import zipfile
import zlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import yaml

from ..errors import ConfigError
from .guards import normalize
from .static_table import (
    CJK_RUN,
    EMBED_BATCH,
    NGRAM_BUCKETS,
    SIF_A,
    STATIC_STYLES,
    StaticTable,
    split_words,
    tokenize,
    word_ngrams,
)

if TYPE_CHECKING:
    from .static import StaticEncoder

__all__ = ["build_table", "collect_vocabulary"]

log = logging.getLogger("sovhub.safety")

RIDGES = (0.1, 0.3, 1.0, 3.0)


def _bank_texts(encoder: StaticEncoder) -> list[tuple[str, str]]:
    """(lang, text) of every exemplar and lexicon phrase."""
    out: list[tuple[str, str]] = []
    for folder in encoder.exemplar_dirs:
        for path in sorted(folder.glob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    item = json.loads(line)
                    if isinstance(item, dict) and isinstance(item.get("text"), str):
                        out.append((path.stem, item["text"]))
    for folder in encoder.lexicon_dirs:
        for path in sorted(folder.glob("*.yaml")):
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            for phrases in data.values() if isinstance(data, dict) else ():
                out.extend((path.stem, str(p)) for p in phrases or ())
    return out


def collect_vocabulary(encoder: StaticEncoder) -> tuple[list[str], np.ndarray]:
    """The words to embed and their probability (the highest in any supported language)."""
    try:
        import wordfreq
    except ModuleNotFoundError as exc:
        raise ConfigError("the static encoder needs the 'wordfreq' package (pip install wordfreq)") from exc
    vocabulary: dict[str, None] = {}
    frequencies = {lang: wordfreq.get_frequency_dict(lang) for lang in encoder.languages}
    for lang in encoder.languages:
        size = encoder.words_per_lang.get(lang, 0)
        for word in wordfreq.top_n_list(lang, size) if size else ():
            vocabulary.update(dict.fromkeys(split_words(word)))
    texts = _bank_texts(encoder)
    for _, text in texts:
        for token in split_words(text):
            if CJK_RUN.match(token):
                # Single characters make segmentation total: every run splits into known pieces.
                vocabulary.update(dict.fromkeys(token))
            else:
                vocabulary[token] = None
    index = dict.fromkeys(vocabulary, 0)
    for _, text in texts:
        vocabulary.update(dict.fromkeys(tokenize(text, index)))
    words = [w for w in vocabulary if w]
    probability = np.array([max(f.get(w, 0.0) for f in frequencies.values()) for w in words], dtype=np.float64)
    return words, probability


def _word_vectors(encoder: StaticEncoder, words: list[str]) -> np.ndarray:
    """e5 vectors of ``words``, reusing those already in the word store (only new words are embedded)."""
    store = encoder.cache_dir / f"static-words-{hashlib.sha256(encoder.model_id.encode()).hexdigest()[:12]}.npz"
    known: dict[str, np.ndarray] = {}
    if store.exists():
        try:
            with np.load(store, allow_pickle=False) as z:
                known = dict(zip((str(k) for k in z["words"]), z["vectors"].astype(np.float32), strict=True))
        except (OSError, ValueError, KeyError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
            log.warning("discarding unreadable word store %s: %s", store, exc)
    missing = [w for w in words if w not in known]
    started = time.perf_counter()
    for lo in range(0, len(missing), EMBED_BATCH):
        batch = missing[lo : lo + EMBED_BATCH]
        vectors = np.asarray(encoder.embedder.embed(batch, kind="query"), dtype=np.float32).reshape(len(batch), -1)
        known.update(zip(batch, vectors, strict=True))
        if lo and lo % (EMBED_BATCH * 50) == 0:
            log.info("static encoder: embedded %d of %d new words", lo, len(missing))
    if missing:
        log.info("static encoder: embedded %d new words in %.1f s", len(missing), time.perf_counter() - started)
        encoder.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = store.with_suffix(f".tmp{os.getpid()}.npz")
        with tmp.open("wb") as fh:
            np.savez(fh, words=np.array(list(known), dtype=str),
                     vectors=np.stack(list(known.values())).astype(np.float16))
        os.replace(tmp, store)
    return np.stack([known[w] for w in words]).astype(np.float32)


def _ngram_table(words: Iterable[str], vectors: np.ndarray) -> np.ndarray:
    """Per hashed n-gram, the unit mean of the vectors of the words containing it."""
    rows: list[int] = []
    buckets: list[int] = []
    for i, word in enumerate(words):
        grams = word_ngrams(word)
        rows.extend([i] * len(grams))
        buckets.extend(grams)
    row_ids = np.asarray(rows)
    bucket_ids = np.asarray(buckets)
    table = np.zeros((NGRAM_BUCKETS, vectors.shape[1]), dtype=np.float32)
    for d in range(vectors.shape[1]):
        table[:, d] = np.bincount(bucket_ids, weights=vectors[row_ids, d], minlength=NGRAM_BUCKETS)
    norms = np.linalg.norm(table, axis=1, keepdims=True)
    return np.asarray(table / np.maximum(norms, 1e-12), dtype=np.float32)


def fit_projection(encoder: StaticEncoder, table: StaticTable) -> np.ndarray:
    """Ridge regression from the table's pooled features of each exemplar to its e5 vector.

    Maps static vectors into e5's space, so the semantic guard can use the classifier trained on
    e5 itself. The ridge strength is the one whose out-of-fold vectors are closest (cosine) to
    the real ones; translations of one exemplar share a fold.
    """
    from .semantic import SemanticGuard, concept_folds, load_exemplars

    exemplars = load_exemplars(encoder.exemplar_dirs, STATIC_STYLES)
    texts = [normalize(e.text) for e in exemplars]
    teacher = SemanticGuard(encoder.embedder, encoder.cache_dir, model_id=encoder.model_id,
                            exemplar_dirs=encoder.exemplar_dirs)
    targets = teacher.exemplar_vectors(texts).astype(np.float64)
    features = np.stack([table.features(t) for t in texts]).astype(np.float64)
    design = np.hstack([features, np.ones((len(texts), 1))])
    folds = concept_folds(exemplars) if len(texts) >= 20 else np.arange(len(texts)) % 2

    def solve(rows: np.ndarray, ridge: float) -> np.ndarray:
        a = design[rows]
        return np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ targets[rows])

    def held_out_cosine(ridge: float) -> float:
        scores = []
        for fold in np.unique(folds):
            test = folds == fold
            mapped = design[test] @ solve(~test, ridge)
            mapped /= np.maximum(np.linalg.norm(mapped, axis=1, keepdims=True), 1e-12)
            scores.append(float(np.mean(np.sum(mapped * targets[test], axis=1))))
        return float(np.mean(scores))

    ridge = max(RIDGES, key=held_out_cosine) if len(np.unique(folds)) > 1 else RIDGES[-1]
    log.info("static encoder: map into e5 space fitted on %d exemplars (ridge %g)", len(texts), ridge)
    return solve(np.ones(len(texts), dtype=bool), ridge).astype(np.float32)


def _as_stored(matrix: np.ndarray) -> np.ndarray:
    return matrix.astype(np.float16).astype(np.float32)


def build_table(encoder: StaticEncoder) -> StaticTable:
    started = time.perf_counter()
    words, probability = collect_vocabulary(encoder)
    # Rounded as stored (float16), so the process that builds the table encodes exactly like
    # every process that later loads it, or rebuilds it from the word store.
    vectors = _as_stored(_word_vectors(encoder, words))
    empty = np.asarray(encoder.embedder.embed([""], kind="query"), dtype=np.float32).reshape(-1)
    common = vectors.mean(axis=0)
    common /= max(float(np.linalg.norm(common)), 1e-12)
    table = StaticTable(
        words=words, vectors=vectors, weights=(SIF_A / (SIF_A + probability)).astype(np.float32),
        ngrams=_as_stored(_ngram_table(words, vectors)), common=common.astype(np.float32), empty=empty,
        digest=encoder.digest,
    )
    table.projection = fit_projection(encoder, table)
    log.info("static encoder: table of %d words built in %.1f s", len(words), time.perf_counter() - started)
    return table
