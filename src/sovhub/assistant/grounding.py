"""Grounded answers: which collections a person's question searches, whether the chosen model writes
their language, and, when it does not, an answer quoted from the knowledge base.

A small model that cannot write Ukrainian writes Cyrillic gibberish; the national knowledge base
and the multilingual embeddings work in every language the box serves. So in a language the
model does not write, the assistant answers with the sentences of the retrieved passages that
answer the question (picked by the embeddings), in the person's language, cited and labelled as
quotations; and says it does not know when no passage passes the relevance floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sovhub import linear_re

from .fidelity import detector_for

if TYPE_CHECKING:
    from ..hub import Hub
    from .knowledge import SearchHit
    from .locales import LocalePack

__all__ = [
    "NO_SOURCES",
    "QuotedAnswer",
    "cited_numbers",
    "declined",
    "dont_know",
    "quote_answer",
    "quoted_label",
    "searched_collections",
    "topic_of",
    "writes_language",
]

# (label of a quoted answer, "I do not know"), per language, written in that language.
_TEXTS: dict[str, tuple[str, str]] = {
    "en": ("Quoted from the knowledge base:",
           "I do not know: the knowledge base has no source that answers this question."),
    "uk": ("Цитата з бази знань:",
           "Я не знаю: у базі знань немає джерела, яке відповідає на це питання."),
    "pl": ("Cytat z bazy wiedzy:",
           "Nie wiem: w bazie wiedzy nie ma źródła, które odpowiada na to pytanie."),
    "de": ("Zitat aus der Wissensdatenbank:",
           "Ich weiß es nicht: Die Wissensdatenbank hat keine Quelle, die diese Frage beantwortet."),
    "fr": ("Citation de la base de connaissances :",
           "Je ne sais pas : la base de connaissances n'a aucune source qui réponde à cette question."),
    "es": ("Cita de la base de conocimiento:",
           "No lo sé: la base de conocimiento no tiene ninguna fuente que responda a esta pregunta."),
    "ar": ("اقتباس من قاعدة المعرفة:",
           "لا أعرف: لا يوجد في قاعدة المعرفة مصدر يجيب عن هذا السؤال."),
    "ja": ("ナレッジベースからの引用:",
           "わかりません。ナレッジベースには、この質問に答える資料がありません。"),
}
# What the knowledge base does hold, said after "I do not know" when passages on neighbouring topics
# were found but none answers ({topics}: their headings, joined by "; ").
_COVERS: dict[str, str] = {
    "en": "The nearest sources it has are about: {topics}.",
    "uk": "Найближчі джерела, які в ній є, стосуються: {topics}.",
    "pl": "Najbliższe źródła, które zawiera, dotyczą: {topics}.",
    "de": "Die nächstliegenden Quellen, die sie enthält, betreffen: {topics}.",
    "fr": "Les sources les plus proches qu'elle contient portent sur : {topics}.",
    "es": "Las fuentes más cercanas que contiene tratan de: {topics}.",
    "ar": "أقرب المصادر الموجودة فيها تتناول: {topics}.",
    "ja": "ナレッジベースにある最も近い資料の内容：{topics}。",
}
MAX_TOPICS = 3
_HEADING_MAX = 80
# Told to a model that writes the language when no passage passes the floor: it must not invent one.
NO_SOURCES = ("No source from the national knowledge base answers this question. Do not cite any source, "
              "and do not invent facts about public services.")

# A model needs this many first answers in a language before its measured fidelity decides.
MIN_MEASURED = 5
MIN_FIDELITY = 0.8
# Sentences quoted: the best one, and others within this much of its similarity (at most MAX_QUOTED).
QUOTE_MARGIN = 0.02
MAX_QUOTED = 2
_SENTENCE = linear_re.compile(r"[^.!?。！？؟\n]+[.!?。！？؟]*")
_ENDS = frozenset(".!?。！？؟")
_CITATION = linear_re.compile(f"\\[([{linear_re.DIGIT}]{{1,3}})\\]")


def quoted_label(lang: str) -> str:
    return _TEXTS.get(lang, _TEXTS["en"])[0]


def dont_know(lang: str) -> str:
    return _TEXTS.get(lang, _TEXTS["en"])[1]


def topic_of(hit: SearchHit) -> str:
    """What a passage is about: its heading (a short first line that is not a sentence), else its document's title."""
    first = hit.text.strip().split("\n", 1)[0].strip()
    if first and len(first) <= _HEADING_MAX and first[-1] not in _ENDS:
        return first
    return hit.title


def declined(lang: str, neighbours: Sequence[SearchHit] = ()) -> str:
    """ "I do not know" in `lang`, with the topics of the passages found that do not answer, if any."""
    topics = list(dict.fromkeys(topic_of(h) for h in neighbours if topic_of(h).strip()))[:MAX_TOPICS]
    if not topics:
        return dont_know(lang)
    covers = _COVERS.get(lang, _COVERS["en"]).format(topics="; ".join(topics))
    return f"{dont_know(lang)} {covers}"


def searched_collections(hub: Hub, pack: LocalePack) -> list[str]:
    """The locale's own collection and those the operator shares with every locale."""
    return list(dict.fromkeys([pack.default_collection, *hub.settings.assistant.kb_shared_collections]))


def writes_language(hub: Hub, model: str, lang: str) -> bool:
    """Whether `model` writes `lang` well: its declared languages, else its measured fidelity."""
    declared = hub.settings.assistant.model_languages.get(model)
    if declared is not None:
        return lang in declared
    from .fidelity import FidelityTracker

    measured = hub.services.get(FidelityTracker).language_rate(model, lang)
    return measured is None or measured[0] < MIN_MEASURED or measured[1] >= MIN_FIDELITY


def cited_numbers(text: str) -> set[int]:
    """The source numbers an answer cites as [n]."""
    return {int(n) for n in _CITATION.findall(text)}


@dataclass(frozen=True, slots=True)
class QuotedAnswer:
    text: str  # Markdown: the label, then each quoted sentence with its [n]
    cited: list[int]  # 1-based numbers of the hits quoted


def _sentences(text: str) -> list[str]:
    found = [s.strip() for s in _SENTENCE.findall(text) if len(s.strip()) >= 12]
    # Headings ("Birth registration") match a question well and answer nothing: sentences that end
    # as sentences do are quoted, when the passage has any.
    ended = [s for s in found if s[-1] in _ENDS]
    return ended or found


def quote_answer(hub: Hub, question: str, lang: str, hits: Sequence[SearchHit]) -> QuotedAnswer | None:
    """The sentences of `hits` in `lang` that best answer `question`; None when none is in `lang`."""
    detector = detector_for(hub.settings.assistant.languages)
    candidates: list[tuple[int, str]] = []
    for number, hit in enumerate(hits, start=1):
        # The passage's language first (more text, surer), then each sentence's when it can tell.
        if detector.detect(hit.text) not in (lang, None):
            continue
        for sentence in _sentences(hit.text):
            if detector.detect(sentence) in (lang, None):
                candidates.append((number, sentence))
    if not candidates:
        return None
    vectors = hub.embedder.embed([s for _, s in candidates], kind="passage")
    query = hub.embedder.embed([question], kind="query")[0]
    scores = np.asarray(vectors, dtype=np.float32) @ np.asarray(query, dtype=np.float32)
    order = [int(i) for i in np.argsort(-scores, kind="stable")]
    best = float(scores[order[0]])
    chosen = [i for i in order if float(scores[i]) >= best - QUOTE_MARGIN][:MAX_QUOTED]
    chosen.sort()  # in the order of the sources, and within a source in reading order
    lines = [quoted_label(lang), ""]
    for i in chosen:
        number, sentence = candidates[i]
        lines.append(f"> {sentence} [{number}]")
        lines.append("")
    return QuotedAnswer("\n".join(lines).strip(), sorted({candidates[i][0] for i in chosen}))
