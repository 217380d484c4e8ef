"""Quoted answers: the answering sentence in the person's language, headings and other languages left out."""

from __future__ import annotations

from sovhub.assistant.grounding import cited_numbers, dont_know, quote_answer, quoted_label, writes_language
from sovhub.assistant.knowledge import KnowledgeBase
from sovhub.hub import Hub

UK = ("Реєстрація народження\n\nНародження дитини треба зареєструвати протягом 45 днів у відділі РАЦС. "
      "Відділ працює з понеділка по п'ятницю.")
EN = "Birth registration\n\nA birth must be registered within 45 days at any civil registry office."


def test_the_answering_sentence_is_quoted_in_the_persons_language(kb: KnowledgeBase, db_hub: Hub) -> None:
    kb.ingest_bytes("uk.md", UK.encode(), "gov-ua")
    kb.ingest_bytes("en.md", EN.encode(), "gov-uk")
    question = "Протягом скількох днів треба зареєструвати народження?"
    hits = kb.search(question, k=4, collections=["gov-ua", "gov-uk", "missing"])
    assert {h.collection for h in hits} == {"gov-ua", "gov-uk"}  # a missing collection is skipped
    quoted = quote_answer(db_hub, question, "uk", hits)
    assert quoted is not None
    assert quoted.text.startswith(quoted_label("uk")) and "45 днів" in quoted.text
    assert "Реєстрація народження [" not in quoted.text  # the heading is not an answer
    assert "registered" not in quoted.text  # the English passage is never quoted to a Ukrainian
    uk_number = next(n for n, h in enumerate(hits, start=1) if h.collection == "gov-ua")
    assert quoted.cited == [uk_number] and cited_numbers(quoted.text) == {uk_number}
    # Nothing in Arabic to quote: no answer (the assistant then says it does not know).
    assert quote_answer(db_hub, question, "ar", hits) is None
    assert dont_know("ar") != dont_know("uk") and dont_know("xx") == dont_know("en")


def test_the_relevance_floor_drops_unrelated_passages(kb: KnowledgeBase) -> None:
    kb.ingest_bytes("uk.md", UK.encode(), "gov-ua")
    assert kb.search("Напиши hello world мовою Python", collections=["gov-ua"], min_similarity=0.83) == []
    assert kb.search("Коли працює відділ РАЦС?", collections=["gov-ua"], min_similarity=0.83)


def test_declared_languages_then_measured_fidelity_decide(db_hub: Hub) -> None:
    from sovhub.assistant.fidelity import FidelityTracker

    assert writes_language(db_hub, "smollm2-135m-instruct", "en")
    assert not writes_language(db_hub, "smollm2-135m-instruct", "uk")
    assert writes_language(db_hub, "other", "uk")  # not measured yet: trusted
    tracker = db_hub.services.get(FidelityTracker)
    for _ in range(5):
        tracker.record("other", "uk", None, text="gibberish " * 10)
    assert not writes_language(db_hub, "other", "uk")
