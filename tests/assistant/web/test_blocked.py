"""A refused citizen sees why in their language and asks for a review with one click (a real appeal)."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest

from sovhub.assistant.i18n import UiCatalogs
from sovhub.assistant.web.chat import NO_REASON
from sovhub.errors import ContentBlocked
from sovhub.pipeline import ChatContext
from sovhub.safety.appeals import list_appeals
from sovhub.safety.records import ModerationRecorder, PendingDecision

from .conftest import Web
from .test_pages import _events

LANGS = ("en", "uk", "pl", "de", "fr", "es", "ar", "ja")
API_TEXT = "If you think this is a mistake, you can appeal: send decision {id} and your reason to /hub/v1/appeals."


class _RecordingBlocker:
    """Blocks like the safety pipeline does: records the decision for the person, then refuses."""

    name = "tests.recording-blocker"

    def __init__(self, web: Web, categories: list[str]) -> None:
        self.recorder = ModerationRecorder(web.hub)
        self.categories = categories

    async def before(self, ctx: ChatContext) -> None:
        entry = PendingDecision(direction="input", action="block", categories=self.categories,
                                clauses=[f"categories.{c}" for c in self.categories], policy_version="2025.1",
                                lang=ctx.lang, principal=ctx.principal.label, org_id=ctx.principal.org_id,
                                user_id=ctx.principal.user_id)
        self.recorder.add(entry)
        self.recorder.flush()
        raise ContentBlocked("blocked", extra={"explanation": API_TEXT.format(id=entry.id), "decision_id": entry.id,
                                               "categories": self.categories, "appeal_url": "/hub/v1/appeals"})

    async def check_output(self, ctx: ChatContext, text: str, final: bool) -> None:
        return None

    async def after(self, ctx: ChatContext, result: Any) -> None:
        return None


def _use_language(web: Web, lang: str) -> None:
    response = web.client.post("/lang", data={"lang": lang, "csrf_token": web.csrf(), "next": "/"},
                               follow_redirects=False)
    assert response.status_code == 303


def _blocked_conversation(web: Web, categories: list[str]) -> tuple[str, str]:
    web.hub.interceptors.append(_RecordingBlocker(web, categories))
    events = _events(web.ask("Write a bash script that backs up my home directory every night."))
    kind, error = events[-1]
    assert kind == "error" and error["block"]["categories"] == categories
    return events[0][1]["id"], error["block"]["decision_id"]


def test_a_ukrainian_citizen_sees_why_and_asks_for_a_review(signed_in: Web) -> None:
    _use_language(signed_in, "uk")
    conversation_id, decision_id = _blocked_conversation(signed_in, ["S14"])
    page = signed_in.client.get(f"/c/{conversation_id}").text
    assert "Наша автоматична перевірка віднесла його до такого: використання інструментів коду асистента" in page
    assert "Попросити про перегляд" in page and 'action="/appeals"' in page
    assert "/hub/v1/appeals" not in page and decision_id not in page.replace(
        f'name="decision_id" value="{decision_id}"', "")  # the id travels in the form only, never as an instruction
    filed = signed_in.client.post("/appeals", data={"csrf_token": signed_in.csrf(), "decision_id": decision_id,
                                                    "reason": "", "conversation_id": conversation_id},
                                  follow_redirects=False)
    assert filed.status_code == 303
    location = filed.headers["location"]
    appeal_id = re.search(r"appeal_id=(apl_[0-9a-f]+)", location)
    assert location.startswith(f"/c/{conversation_id}?appeal=filed") and appeal_id
    shown = signed_in.client.get(location).text
    assert f"Ваше прохання про перегляд надіслано. Його розгляне людина. Номер: {appeal_id.group(1)}" in shown
    queued = [a for a in list_appeals(signed_in.hub) if a.id == appeal_id.group(1)]
    assert len(queued) == 1 and queued[0].categories == ["S14"] and queued[0].reason == NO_REASON
    again = signed_in.client.post("/appeals", data={"csrf_token": signed_in.csrf(), "decision_id": decision_id,
                                                    "reason": "Це резервна копія.",
                                                    "conversation_id": conversation_id}, follow_redirects=False)
    assert again.headers["location"].endswith("?appeal=exists")


def test_a_reason_given_reaches_the_reviewer(signed_in: Web) -> None:
    conversation_id, decision_id = _blocked_conversation(signed_in, ["S2", "S14"])
    page = signed_in.client.get(f"/c/{conversation_id}").text
    assert ("Our automatic check read it as: a crime such as fraud, theft or breaking into other people's "
            "computers or accounts; using the assistant's code tools") in page
    filed = signed_in.client.post("/appeals", data={"csrf_token": signed_in.csrf(), "decision_id": decision_id,
                                                    "reason": "  It is my own backup.  ",
                                                    "conversation_id": conversation_id}, follow_redirects=False)
    appeal_id = re.search(r"appeal_id=(apl_[0-9a-f]+)", filed.headers["location"])
    assert appeal_id
    view = next(a for a in list_appeals(signed_in.hub) if a.id == appeal_id.group(1))
    assert view.reason == "It is my own backup."


def test_someone_elses_or_an_unknown_decision_is_not_filed(signed_in: Web) -> None:
    conversation_id, _ = _blocked_conversation(signed_in, ["S14"])
    refused = signed_in.client.post("/appeals", data={"csrf_token": signed_in.csrf(), "decision_id": "mod_unknown",
                                                      "conversation_id": conversation_id}, follow_redirects=False)
    assert refused.headers["location"].endswith("?appeal=invalid")
    assert "This request for a review could not be filed." in signed_in.client.get(refused.headers["location"]).text
    assert list_appeals(signed_in.hub) == []


def test_an_unknown_category_still_gets_a_plain_reason(signed_in: Web) -> None:
    conversation_id, _ = _blocked_conversation(signed_in, ["casino"])
    page = signed_in.client.get(f"/c/{conversation_id}").text
    assert "Our automatic check read it as: something this service's rules do not allow." in page


@pytest.mark.parametrize("lang", LANGS)
def test_the_refusal_is_in_each_language_for_the_page_and_the_live_stream(signed_in: Web, lang: str) -> None:
    _use_language(signed_in, lang)
    conversation_id, _ = _blocked_conversation(signed_in, ["S11"])
    ui = signed_in.hub.services.get(UiCatalogs).get(lang)
    page = signed_in.client.get(f"/c/{conversation_id}").text
    button, reason = ui.gettext("Ask for a review"), ui.gettext("suicide or self-harm")
    assert (button == "Ask for a review") == (lang == "en") and (reason == "suicide or self-harm") == (lang == "en")
    assert button in page and reason in page
    # What the script uses when a block arrives while streaming: the same words, from the page.
    attribute = re.search(r'data-why-blocked="([^"]+)"', page)
    assert attribute and json.loads(html.unescape(attribute.group(1)))["S11"] == reason
    assert ui.gettext("Our automatic check read it as: %(why)s.").replace("%(why)s", reason) in page
