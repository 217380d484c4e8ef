"""A Ukrainian and an Arabic citizen ask, on a phone and on a desktop, a question only the national
knowledge base can answer; the bundled model writes neither language, so the answer quotes the
passage in their language and cites it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.server import RemoteHub, run_cli

from .conftest import SERVER_ENV, shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CASES = {
    "uk": {
        "collection": "gov-ua", "email": "olena@example.ua", "file": "criminal-record.md",
        "document": ("# Довідка про несудимість\n\nДовідку про несудимість видає сервісний центр МВС. "
                     "Послуга безоплатна, а довідку видають протягом 10 робочих днів.\n"),
        "question": "Скільки днів видають довідку про несудимість?", "fact": "10 робочих днів",
    },
    "ar": {
        "collection": "gov-ae", "email": "layla@example.ae", "file": "driving-licence.md",
        "document": ("# تجديد رخصة القيادة\n\nلتجديد رخصة القيادة قم بزيارة مركز خدمة المتعاملين ومعك بطاقة الهوية. "
                     "رسوم تجديد رخصة القيادة 300 درهم وتصدر الرخصة في اليوم نفسه.\n"),
        "question": "كم رسوم تجديد رخصة القيادة؟", "fact": "300 درهم",
    },
}
CITIZEN_PASSWORD = "a citizen's long password"


def _ingest(page: Any, tmp_path: Path, case: dict[str, str]) -> None:
    sign_in(page)  # the staff account of the server fixture
    document = tmp_path / case["file"]
    document.write_text(case["document"], "utf-8")
    page.goto("/admin")
    page.set_input_files("#kb-file", str(document))
    page.fill("#kb-collection", case["collection"])
    page.click("form[action='/admin/kb'] button[type=submit]")
    page.wait_for_selector("p.notice")


@pytest.mark.parametrize("lang", ["uk", "ar"])
@pytest.mark.parametrize("phone", [True, False], ids=["phone", "desktop"])
def test_a_citizen_gets_the_knowledge_base_answer_in_their_language(
    open_page: Any, server: RemoteHub, tmp_path: Path, lang: str, phone: bool
) -> None:
    case = CASES[lang]
    staff = open_page("en-GB")
    _ingest(staff, tmp_path, case)
    email = ("phone-" if phone else "desk-") + case["email"]
    run_cli(server.data_dir, "users", "create", email, "--password-stdin", "--locale", lang, env=SERVER_ENV,
            input=CITIZEN_PASSWORD + "\n")
    page = open_page({"uk": "uk-UA", "ar": "ar-AE"}[lang], phone=phone)
    sign_in(page, email, CITIZEN_PASSWORD)
    assert page.locator("html").get_attribute("lang") == lang
    if lang == "ar":
        assert page.locator("html").get_attribute("dir") == "rtl"
    page.fill("#content", case["question"])
    page.press("#content", "Enter")
    page.wait_for_function("() => document.querySelector('#stop').hidden === true "
                           "&& document.querySelectorAll('li.message.assistant .actions').length > 0")
    answer = page.locator("li.message.assistant").last
    text = answer.locator(".bubble").inner_text()
    assert case["fact"] in text, text
    link = answer.locator(".sources a").first
    assert link.get_attribute("href").startswith("/kb/chunks/")
    # The page followed the new chat: its title in the heading and in the list, without a reload.
    assert page.locator("#chat-title").inner_text() == case["question"]
    assert page.locator("#conversation-list li").count() >= 1
    assert page.locator("#conversation-count, #no-conversations").count() == 0  # no stale "no conversations"
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], width  # no page wider than the screen
    shot(page, f"citizen-{lang}-{'phone' if phone else 'desktop'}")
    link.click()
    page.wait_for_selector(".passage-text")
    assert case["fact"] in page.locator(".passage-text").inner_text()
