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
import threading
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .semantic import DEFAULT_EXEMPLAR_DIR, TextEmbedder
from .static_build import build_table
from .static_table import (
    STATIC_STYLES,
    StaticTable,
    tokenize,
)

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
# Words per language taken from wordfreq. The build embeds each word once with e5 (a few
# milliseconds each on a small CPU), so this bounds the first start-up: see docs/benchmarks.md.
DEFAULT_WORDS_PER_LANG = 2000
# Per-language overrides. Empty on purpose: 6,000 words for pl, uk and ar (rich inflection) raised
# recall but pushed false positives over 5% and doubled the build (docs/benchmarks.md).
WORDS_PER_LANG: dict[str, int] = {}
_DEFAULT_LEXICON_DIR = Path(__file__).parent / "data" / "lexicon"


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
