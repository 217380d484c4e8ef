"""Grounded answers on the default box: the real bundled model, the real multilingual embeddings.

A Ukrainian or an Arabic citizen is answered (quoted from their locale's collection, cited,
labelled), never with a context error; a question never cites another locale's collection unless
the operator shares it; an off-topic question cites nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sovhub.assistant.grounding import dont_know, quoted_label
from sovhub.assistant.knowledge import KnowledgeBase
from sovhub.assistant.people import create_user
from sovhub.hub import Hub, build_hub
from sovhub.settings import load_settings
from tests.assistant.conftest import remember_embeddings

EVAL = json.loads((Path(__file__).resolve().parents[3] / "bench" / "data" / "grounded_eval.json")
                  .read_text(encoding="utf-8"))["locales"]
PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
DOGS = ("Dog licences\n\nEvery dog must be registered with the town hall within 14 days of its arrival; "
        "the licence fee is 25 pounds a year.")
SHARED = "Довідка про несудимість\n\nДовідку про несудимість видають безкоштовно протягом 3 робочих днів онлайн."


class Citizen:
    def __init__(self, client: TestClient, hub: Hub) -> None:
        self.client, self.hub = client, hub

    def csrf(self, path: str = "/") -> str:
        found = _CSRF.search(self.client.get(path).text)
        assert found
        return found.group(1)

    def speak(self, lang: str) -> None:
        self.client.post("/lang", data={"lang": lang, "csrf_token": self.csrf(), "next": "/"}, follow_redirects=False)

    def ask(self, text: str, conversation: str | None = None) -> dict[str, Any]:
        path = f"/c/{conversation}/messages" if conversation else "/c"
        body = self.client.post(path, data={"content": text, "csrf_token": self.csrf()},
                                headers={"accept": "text/event-stream"}).text
        events = []
        for block in body.split("\n\n"):
            name, data = re.search(r"^event: (.+)$", block, re.M), re.search(r"^data: (.+)$", block, re.M)
            if name and data:
                events.append((name.group(1), json.loads(data.group(1))))
        names = [n for n, _ in events]
        assert "error" not in names, events
        done = events[-1][1]
        started = next((d for n, d in events if n == "conversation"), {})
        return {"text": "".join(d["text"] for n, d in events if n == "delta"), "citations": done["citations"],
                "collections": {c["collection"] for c in done["citations"]}, "conversation": started.get("id")}


@pytest.fixture(scope="module")
def citizen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Citizen]:
    from sovhub.app import create_app

    data_dir = tmp_path_factory.mktemp("grounded")
    # Every question counts against the person's quota, those answered from the sources too: this
    # module asks dozens a minute.
    hub = build_hub(load_settings(data_dir=str(data_dir), safety={"enabled": False},
                                  assistant={"kb_shared_collections": ["shared-ua"]},
                                  access={"user_limits": {"rpm": 1000, "rpd": 10000}}))
    remember_embeddings(hub)
    kb = hub.services.get(KnowledgeBase)
    for code, collection in (("en-GB", "gov-uk"), ("uk-UA", "gov-ua"), ("ar-AE", "gov-ae"), ("de-DE", "gov-de")):
        kb.ingest_bytes(f"{code}.md", EVAL[code]["document"].encode(), collection)
    kb.ingest_bytes("shared.md", SHARED.encode(), "shared-ua")
    kb.ingest_bytes("dogs.md", DOGS.encode(), "gov-uk")
    create_user(hub, "olena@example.org", PASSWORD, display_name="Olena")
    with TestClient(create_app(hub), base_url="http://testserver") as client:
        person = Citizen(client, hub)
        client.post("/login", data={"email": "olena@example.org", "password": PASSWORD,
                                    "csrf_token": person.csrf("/login"), "next": "/"}, follow_redirects=False)
        yield person
    hub.close()


@pytest.mark.parametrize(("lang", "code"), [("uk", "uk-UA"), ("ar", "ar-AE")])
def test_ukrainian_and_arabic_questions_are_answered_from_their_collection(
    citizen: Citizen, lang: str, code: str
) -> None:
    citizen.speak(lang)
    for question, fact in EVAL[code]["answerable"]:
        got = citizen.ask(question)
        assert fact in got["text"], got
        assert got["text"].startswith(quoted_label(lang))
        assert got["collections"] and got["collections"] <= {"gov-ua" if lang == "uk" else "gov-ae", "shared-ua"}
        # Every [n] in the answer is a citation shown, and every citation shown is quoted.
        assert {int(n) for n in re.findall(r"\[(\d+)\]", got["text"])} == {c["n"] for c in got["citations"]}


def test_a_question_never_cites_another_locales_collection(citizen: Citizen) -> None:
    citizen.speak("de")
    got = citizen.ask("Wie viel kostet ein neuer Reisepass?")
    assert "1737" in got["text"] and got["collections"] == {"gov-de"}
    # The same fact sits in the Ukrainian and Arabic collections: a German person never sees them,
    # nor the collection shared... which is shared, so it may be searched, but it does not answer.
    got = citizen.ask("Скільки коштує новий паспорт?")  # Ukrainian words in a German interface
    assert not got["collections"] & {"gov-ua", "gov-ae", "gov-uk"}


def test_a_shared_collection_is_searched_for_every_locale(citizen: Citizen) -> None:
    citizen.speak("uk")
    got = citizen.ask("Скільки днів видають довідку про несудимість?")
    assert "3 робочих днів" in got["text"] and got["collections"] == {"shared-ua"}


def test_off_topic_questions_cite_nothing(citizen: Citizen) -> None:
    citizen.speak("en")
    got = citizen.ask("write hello world in Python")
    assert got["citations"] == [] and got["text"]  # the bundled model writes English: it answers
    citizen.speak("uk")
    got = citizen.ask("Напиши hello world мовою Python")
    assert got["citations"] == [] and got["text"] == dont_know("uk")


def test_an_english_question_about_the_sources_is_quoted_and_off_topic_is_written(citizen: Citizen) -> None:
    citizen.speak("en")
    # The bundled model writes English but is too small to restate a source (quote_models): quoted.
    got = citizen.ask("How much does a new passport cost?")
    assert "1737" in got["text"] and got["collections"] == {"gov-uk"}
    assert got["text"].startswith(quoted_label("en"))


def test_a_model_asked_in_ukrainian_gets_a_prompt_that_fits_its_window(citizen: Citizen) -> None:
    """The bug of issue 13: the uk-UA prompt, guidance and passages were 3,464+ tokens for a 2,048 window."""
    assistant = citizen.hub.settings.assistant
    saved = assistant.model_languages, assistant.quote_models
    assistant.model_languages, assistant.quote_models = {"smollm2-135m-instruct": ["en", "uk"]}, []
    try:
        citizen.speak("uk")
        first = citizen.ask("Скільки коштує новий паспорт? " + "Поясніть детально, будь ласка. " * 20)
        assert first["text"]  # answered by the model (whatever its Ukrainian is worth), no context error
        assert not first["text"].startswith(quoted_label("uk"))
        assert first["collections"] <= {"gov-ua", "shared-ua"}
    finally:
        assistant.model_languages, assistant.quote_models = saved


def test_a_fact_the_sources_do_not_hold_is_not_invented(citizen: Citizen) -> None:
    """The bundled model writes English: asked anyway, it named the person "Emmie" and invented fees."""
    citizen.speak("en")
    for question in ("What is my name?", "What is the fee for a fishing licence?"):
        got = citizen.ask(question)
        assert got["text"].startswith(dont_know("en")) and got["citations"] == [], (question, got)


def test_a_passage_on_a_neighbouring_topic_is_not_quoted_as_the_answer(citizen: Citizen) -> None:
    """The dog-licence passage passes the relevance floor for a fishing licence; it does not answer it."""
    citizen.speak("en")
    got = citizen.ask("How much does a fishing licence cost?")
    assert got["citations"] == [] and got["text"] == f"{dont_know('en')} The nearest sources it has are about: " \
        "Dog licences.", got
    got = citizen.ask("How much is the licence fee for a dog?")
    assert "25 pounds" in got["text"] and got["collections"] == {"gov-uk"}, got
    citizen.speak("uk")
    got = citizen.ask("Скільки коштує ліцензія на риболовлю?")  # in Ukrainian: nothing to quote, the same decline
    assert got["citations"] == [] and got["text"].startswith(dont_know("uk")), got
    assistant = citizen.hub.settings.assistant
    assistant.kb_answer_check = False
    try:
        citizen.speak("en")
        got = citizen.ask("How much does a fishing licence cost?")
        assert got["collections"] == {"gov-uk"} and "25 pounds" in got["text"]  # the floor alone quotes it
    finally:
        assistant.kb_answer_check = True


def test_ordinary_chat_is_still_answered_by_the_model(citizen: Citizen) -> None:
    citizen.speak("en")
    got = citizen.ask("Good evening, nice to meet you!")
    assert got["text"] and got["text"] != dont_know("en") and got["citations"] == []


def test_what_the_person_said_in_the_conversation_is_the_models_to_use(citizen: Citizen) -> None:
    citizen.speak("en")
    first = citizen.ask("Hello, I am Olena and I live in Lviv.")
    assert first["conversation"]
    got = citizen.ask("What is my name?", conversation=first["conversation"])
    assert got["text"] and got["text"] != dont_know("en")


def test_the_operator_can_let_the_model_answer_unsourced_questions(citizen: Citizen) -> None:
    assistant = citizen.hub.settings.assistant
    assistant.decline_unsourced = False
    try:
        citizen.speak("en")
        got = citizen.ask("What is my name?")
        assert got["text"] and got["text"] != dont_know("en") and got["citations"] == []
    finally:
        assistant.decline_unsourced = True


def test_a_question_answered_from_the_sources_counts_against_the_persons_quota(citizen: Citizen) -> None:
    """No model is asked for "I do not know" or a quoted passage; the question is still one of the person's."""
    from sovhub.access.person_access import set_person_limits
    from sovhub.assistant.people import find_user

    user_id = find_user(citizen.hub, "olena@example.org")
    set_person_limits(citizen.hub, user_id, {"rpm": 1}, actor="test")
    try:
        citizen.speak("en")
        refused = []
        for _ in range(2):  # answered from the sources each time (a fact they do not hold)
            body = citizen.client.post("/c", data={"content": "What is the fee for a fishing licence?",
                                                   "csrf_token": citizen.csrf()},
                                       headers={"accept": "text/event-stream"}).text
            refused.append("rate_limit_exceeded" in body)
        assert refused[-1], "the second source-answered question in a minute was answered"
    finally:
        set_person_limits(citizen.hub, user_id, {"rpm": None}, actor="test")
