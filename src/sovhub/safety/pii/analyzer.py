"""The PII analyzer: Presidio's AnalyzerEngine with checksum recognizers and no NLP model.

Presidio's default engine loads a spaCy model (a download) and runs it on every message; the
pattern recognizers that find identifiers need none of it. :class:`PiiAnalyzer` gives Presidio
its no-op NLP engine, so it starts offline in milliseconds, and adds two things Presidio leaves
to the caller:

* evasion folding: zero-width characters, full-width and non-Latin digits and Cyrillic/Greek
  look-alike letters are folded before matching, and every span is mapped back onto the
  original text (so redaction removes what the person actually typed);
* a pre-filter: every supported entity contains a digit or an "@"; a message with neither
  skips the engine entirely (most chat messages).

spaCy NER (names, places) is optional: pass ``spacy_model`` (an installed spaCy package such
as ``xx_ent_wiki_sm``); it is off by default because it needs a model the hub does not ship.
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from typing import Any

from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
from presidio_analyzer.nlp_engine import NoOpNlpEngine

from .recognizers import HOMOGLYPHS, LANGUAGE, default_recognizers

__all__ = ["PiiAnalyzer", "PiiEntity", "fold"]

log = logging.getLogger("sovhub.safety.pii")

_ZERO_WIDTH = frozenset("\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff")
@dataclass(frozen=True, slots=True)
class PiiEntity:
    type: str
    start: int
    end: int
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "start": self.start, "end": self.end, "score": round(self.score, 3)}


def fold(text: str) -> tuple[str, list[int] | None]:
    """The text as the recognizers should see it, and where each folded char came from.

    The map is None when nothing changed (ASCII input, the common case) so the hot path
    allocates nothing; otherwise ``origin[i]`` is the index in ``text`` of folded char ``i``
    and ``origin[len(folded)] == len(text)``.
    """
    if text.isascii():
        return text, None
    out: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        if ch in _ZERO_WIDTH:
            continue
        if ch.isdigit() and not ("0" <= ch <= "9"):
            digit = unicodedata.digit(ch, None)
            if digit is not None:
                ch = str(digit)
        elif ord(ch) >= 0xFF01 and ord(ch) <= 0xFF5E:  # full-width ASCII block
            ch = chr(ord(ch) - 0xFEE0)
        else:
            ch = ch.translate(HOMOGLYPHS)
        out.append(ch)
        origin.append(i)
    origin.append(len(text))
    return "".join(out), origin


class _NoContextEnhancer(ContextAwareEnhancer):
    """The recognizers apply their own script-agnostic context rule; skip the lemma-based pass."""

    def __init__(self) -> None:
        super().__init__(0.0, 0.0, 0, 0)

    def enhance_using_context(self, text: str, raw_results: Any, *args: Any, **kwargs: Any) -> Any:
        return raw_results


class PiiAnalyzer:
    """Find PII spans in a text. Build once (a few ms) and share: analysis is thread-safe."""

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        entities: list[str] | None = None,
        spacy_model: str | None = None,
    ) -> None:
        self.threshold = threshold
        self.entities = entities
        self.uses_ner = spacy_model is not None
        registry = RecognizerRegistry(supported_languages=[LANGUAGE])
        for recognizer in default_recognizers():
            registry.add_recognizer(recognizer)
        if spacy_model is None:
            nlp_engine: Any = NoOpNlpEngine([{"lang_code": LANGUAGE, "model_name": "none"}])
        else:
            nlp_engine = self._spacy_engine(spacy_model)
            registry.add_nlp_recognizer(nlp_engine=nlp_engine)
        self.engine = AnalyzerEngine(
            registry=registry,
            nlp_engine=nlp_engine,
            supported_languages=[LANGUAGE],
            context_aware_enhancer=_NoContextEnhancer(),
            default_score_threshold=threshold,
        )
        self.supported = sorted(self.engine.get_supported_entities(LANGUAGE))

    @staticmethod
    def _spacy_engine(model: str) -> Any:
        from presidio_analyzer.nlp_engine import NlpEngineProvider

        provider = NlpEngineProvider(
            nlp_configuration={"nlp_engine_name": "spacy", "models": [{"lang_code": LANGUAGE, "model_name": model}]}
        )
        return provider.create_engine()

    def analyze(self, text: str) -> list[PiiEntity]:
        """PII spans in ``text`` (offsets into ``text`` itself), sorted, non-overlapping."""
        if not text:
            return []
        folded, origin = fold(text)
        if not self.uses_ner and "@" not in folded and not any(c.isdigit() for c in folded):
            return []
        results = self.engine.analyze(folded, LANGUAGE, entities=self.entities)
        spans: list[PiiEntity] = []
        # Longest, most confident first; drop anything overlapping a span already taken, so a
        # PESEL that is also an 11-digit Steuer-ID candidate is reported once, as the likelier one.
        for r in sorted(results, key=lambda r: (-r.score, -(r.end - r.start), r.start)):
            start, end = (r.start, r.end) if origin is None else (origin[r.start], origin[r.end - 1] + 1)
            if any(start < s.end and s.start < end for s in spans):
                continue
            spans.append(PiiEntity(r.entity_type, start, end, float(r.score)))
        spans.sort(key=lambda s: s.start)
        return spans
