"""Whether a retrieved passage answers the question, not only shares its topic.

The relevance floor (``assistant.kb_min_similarity``) compares the question with a whole passage:
"How much does it cost to register a divorce?" scores as high against "The state fee for
registering a marriage is 84 hryvnias" as an answerable question does against its own passage
(multilingual-e5 similarities of neighbouring topics overlap). Quoting that passage tells a
citizen a wrong fee. So each passage over the floor is checked on two kinds of evidence:

- **sentence similarity**: the question's e5 similarity to the passage's best sentence (a passage
  mixes topics; its best sentence is what would be quoted);
- **topic coverage**: the share of the question's topic words (its words less function words,
  question words and the words that only say what kind of answer is wanted: ``stopwords.py``)
  found in the passage, matched by shared stem (the first 5 letters: "registering" and
  "registration", or all but two of the shorter word's: "подати" and "подають"), Japanese by
  its runs of kanji or katakana. Only when the question and the passage are in the same
  language; across languages the words cannot match, and the sentence similarity must decide
  alone, against its own bar.

A passage answers when its best sentence is similar enough and it covers enough of the
question's topic, or when its sentence similarity alone is very high. No passage of the national
knowledge base answers a question about the person's own records ("What is my registered
address?" shares every topic word with the rule for registering one): when the question kinds
(``QuestionKinds``) put it closer to those than to public-service questions by RECORDS_MARGIN,
none answers. The thresholds were calibrated on bench/data/grounded_eval.json and
bench/data/grounded_calib2.json (``bench/answering_calibrate.py``, docs/benchmarks.md), never on
the held-out set.

Usage::

    check = hub.services.get(AnswerCheck)
    answering = check.answering(question, hits)   # the hits that answer, in their order; [] if none
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from sovhub import linear_re

from .knowledge.chunking import sentence_spans
from .question_kinds import PERSONAL, SERVICE
from .stopwords import ANSWER_WORDS, STOP_WORDS

if TYPE_CHECKING:
    from .knowledge import SearchHit

__all__ = [
    "CROSS_SENTENCE",
    "MIN_COVERAGE",
    "MIN_SENTENCE",
    "RECORDS_MARGIN",
    "SURE_SENTENCE",
    "AnswerCheck",
    "Evidence",
    "coverage",
    "topic_terms",
]

# Fitted by bench/answering_calibrate.py (bench/results/grounded-answering-calibration.json), the middle
# of each tied range: every answerable calibration question kept, the most unanswerable ones declined.
MIN_SENTENCE = 0.85
MIN_COVERAGE = 0.66  # two of three topic words
SURE_SENTENCE = 0.91
CROSS_SENTENCE = 0.82
RECORDS_MARGIN = 0.055

SENTENCE_CACHE = 4096  # sentence vectors kept: the same passages come back question after question
STEM = 5  # letters two words must share to count as one (inflections, derived forms)
_WORD = linear_re.compile(f"[{linear_re.WORD}]+")
_JAPANESE = linear_re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# A word with Japanese in it, in pieces: kanji runs, katakana runs, and runs of other letters ("Python").
_PIECES = linear_re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[\u30a0-\u30ff]+|"
                            "[^\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_DIGITS = linear_re.compile(f"^[{linear_re.DIGIT}]+$")
# The Arabic article and the particles written with it ("والزواج", "بالعنوان").
_ARABIC_ARTICLE = ("وال", "بال", "فال", "كال", "لل", "ال")
# What a sentence or clause ends with (the chunker also cuts at "; "); a line without it is a heading.
_ENDS = frozenset(".!?;:。！？؟；：")


class TextEmbedder(Protocol):
    def embed(self, texts: list[str], kind: str = "passage") -> np.ndarray: ...


class KindScores(Protocol):
    def scores(self, question: str) -> dict[str, float]: ...


def _normal(word: str) -> str:
    for article in _ARABIC_ARTICLE:
        if word.startswith(article) and len(word) - len(article) >= 3:
            return word[len(article):]
    return word


def _words(text: str) -> list[str]:
    """Lower-cased words, the Arabic article left off."""
    return [_normal(w) for w in _WORD.findall(text.lower())]


def topic_terms(question: str) -> list[str]:
    """The words of `question` that say what it is about, in order, each once.

    Japanese has no spaces: its terms are the runs of kanji and of katakana ("在留許可", "パスポート"),
    the kana between them being particles and endings.
    """
    seen: dict[str, None] = {}
    for word in _words(question):
        pieces = _PIECES.findall(word) if _JAPANESE.search(word) else [word]
        for piece in pieces:
            if piece in STOP_WORDS or piece in ANSWER_WORDS:
                continue
            if len(piece) < 2 and not _DIGITS.search(piece) and not _JAPANESE.search(piece):
                continue
            seen.setdefault(piece, None)
    return list(seen)


def _same_word(term: str, word: str) -> bool:
    """One word in two forms: the same first STEM letters, or all but the last two of the shorter
    ("подати" / "подають", "шлюб" / "шлюбу"); numbers only exactly."""
    if term == word:
        return True
    if _DIGITS.search(term) or _DIGITS.search(word):
        return False
    shorter = min(len(term), len(word))
    if shorter < 4:
        return False
    common = 0
    for a, b in zip(term, word, strict=False):
        if a != b:
            break
        common += 1
    return common >= STEM or common >= max(4, shorter - 2)


def coverage(terms: Sequence[str], passage: str) -> float | None:
    """The share of `terms` found in `passage`; None when there are none to look for."""
    if not terms:
        return None
    lowered = passage.lower()
    words = set(_words(passage))
    found = sum(1 for t in terms if (t in lowered if _JAPANESE.search(t) else any(_same_word(t, w) for w in words)))
    return found / len(terms)


def _sentences(text: str) -> list[str]:
    """A passage's sentences; headings ("Marriage registration") only when it has nothing else."""
    found = [line.strip() for s, e in sentence_spans(text) for line in text[s:e].split("\n")]
    found = [s for s in found if len(s) >= 4]
    ended = [s for s in found if s[-1] in _ENDS]
    return ended or found or [text]


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the check saw for one passage."""

    hit: SearchHit
    sentence: float  # cosine similarity of the question to the passage's best sentence
    coverage: float | None  # share of the question's topic words in the passage; None across languages
    same_language: bool


class AnswerCheck:
    """Decides which retrieved passages answer a question (blocking: e5 and the language detector).

    One per hub (``hub.services``): it keeps the vectors of the sentences it has seen.
    """

    def __init__(self, embedder: TextEmbedder, detect: Callable[[str], str | None], *,
                 min_sentence: float = MIN_SENTENCE, min_coverage: float = MIN_COVERAGE,
                 sure_sentence: float = SURE_SENTENCE, cross_sentence: float = CROSS_SENTENCE,
                 kinds: KindScores | None = None, records_margin: float = RECORDS_MARGIN) -> None:
        self._embedder = embedder
        self._detect = detect
        self._kinds, self.records_margin = kinds, records_margin
        self.min_sentence, self.min_coverage = min_sentence, min_coverage
        self.sure_sentence, self.cross_sentence = sure_sentence, cross_sentence
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def _sentence_vectors(self, sentences: list[str]) -> np.ndarray:
        with self._lock:
            known = {s: self._vectors[s] for s in sentences if s in self._vectors}
            for s in known:
                self._vectors.move_to_end(s)
        missing = [s for s in dict.fromkeys(sentences) if s not in known]
        if missing:
            fresh = np.asarray(self._embedder.embed(missing, kind="passage"), dtype=np.float32)
            with self._lock:
                for s, vector in zip(missing, fresh, strict=True):
                    known[s] = self._vectors[s] = vector
                while len(self._vectors) > SENTENCE_CACHE:
                    self._vectors.popitem(last=False)
        return np.stack([known[s] for s in sentences])

    def evidence(self, question: str, hits: Sequence[SearchHit]) -> list[Evidence]:
        if not hits or not question.strip():
            return []
        split = [_sentences(h.text) for h in hits]
        flat = [s for sentences in split for s in sentences]
        vectors = self._sentence_vectors(flat)
        query = np.asarray(self._embedder.embed([question], kind="query")[0], dtype=np.float32)
        scores = vectors @ query
        asked_in = self._detect(question)
        terms = topic_terms(question)
        out, start = [], 0
        for hit, sentences in zip(hits, split, strict=True):
            best = float(scores[start : start + len(sentences)].max())
            start += len(sentences)
            written_in = self._detect(hit.text)
            # Unsure of either language (a short question, a table of numbers): the words are compared.
            same = asked_in is None or written_in is None or asked_in == written_in
            out.append(Evidence(hit, best, coverage(terms, f"{hit.title}\n{hit.text}") if same else None, same))
        return out

    def answers(self, evidence: Evidence) -> bool:
        if not evidence.same_language:
            return evidence.sentence >= self.cross_sentence
        if evidence.sentence >= self.sure_sentence:
            return True
        covered = evidence.coverage if evidence.coverage is not None else 1.0
        return evidence.sentence >= self.min_sentence and covered >= self.min_coverage

    def about_own_records(self, question: str) -> bool:
        """Whether `question` asks for the person's own records rather than how a public service works."""
        if self._kinds is None:
            return False
        scores = self._kinds.scores(question)
        return scores[PERSONAL] - scores[SERVICE] > self.records_margin

    def answering(self, question: str, hits: Sequence[SearchHit]) -> list[SearchHit]:
        """The hits that answer `question`, in their order."""
        if not hits or self.about_own_records(question):
            return []
        return [e.hit for e in self.evidence(question, hits) if self.answers(e)]
