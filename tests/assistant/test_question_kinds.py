"""What a question asks for, by the real multilingual embeddings: facts only the sources hold, or not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sovhub.assistant.question_kinds import CHAT, KINDS, PERSONAL, PROTOTYPES, SERVICE, QuestionKinds, load_prototypes
from sovhub.embedder import Embedder

BENCH = Path(__file__).resolve().parents[2] / "bench" / "data"
LANGUAGES = {"en", "uk", "pl", "de", "fr", "es", "ar", "ja"}


def _labelled() -> list[tuple[str, str]]:
    """(label, question) of the calibration and held-out sets: SERVICE, PERSONAL or CHAT."""
    out: list[tuple[str, str]] = []
    calibration = json.loads((BENCH / "grounded_eval.json").read_text(encoding="utf-8"))["locales"]
    for item in calibration.values():
        out += [(SERVICE, q) for q, _fact in item["answerable"]]
        out += list(zip(item["unanswerable_kinds"], item["unanswerable"], strict=True))
    heldout = json.loads((BENCH / "grounded_heldout.json").read_text(encoding="utf-8"))["locales"]
    for item in heldout.values():
        out += [(SERVICE, q) for q, _fact in item["answerable"]]
        out += [(kind, q) for q, kind in item["unanswerable"]]
        out += [(CHAT, q) for q in item["chat"]]
    return out


@pytest.fixture(scope="module")
def kinds() -> Iterator[QuestionKinds]:
    yield QuestionKinds(Embedder("intfloat/multilingual-e5-small"))


def test_prototypes_cover_every_kind_in_every_language_and_none_is_an_evaluation_question() -> None:
    data = json.loads(PROTOTYPES.read_text(encoding="utf-8"))["kinds"]
    assert set(data) == set(KINDS)
    for kind in KINDS:
        assert set(data[kind]) == LANGUAGES, kind
    prototypes = {q for questions in load_prototypes().values() for q in questions}
    # The calibration and held-out sets measure the prototypes: they must not be among them.
    assert not prototypes & {q for _label, q in _labelled()}


def test_evaluation_questions_are_told_fact_seeking_or_ordinary(kinds: QuestionKinds) -> None:
    wrong = [(label, q, kinds.kind(q)) for label, q in _labelled() if (kinds.kind(q) == CHAT) != (label == CHAT)]
    assert wrong == []


@pytest.mark.parametrize("question", ["What is my name?", "Як мене звати?", "私の名前は何ですか？"])
def test_a_question_about_the_persons_own_name_is_not_ordinary_chat(kinds: QuestionKinds, question: str) -> None:
    assert kinds.kind(question) in (PERSONAL, SERVICE)


def test_an_empty_question_is_chat(kinds: QuestionKinds) -> None:
    assert kinds.kind("   ") == CHAT


def test_the_margin_decides(kinds: QuestionKinds) -> None:
    question = "How much does a fishing licence cost?"
    assert kinds.kind(question) == SERVICE
    strict = QuestionKinds(kinds._embedder, margin=1.0)
    assert strict.kind(question) == CHAT
    assert strict.scores(question)[SERVICE] > strict.scores(question)[CHAT]
