"""Chat basics in a real browser, desktop and phone: the list follows a new chat, rename, search,
delete with confirmation, regenerate keeping versions, highlighted code with a copy button, dark
mode from the system, a phone layout without overflow, an attached document, /transparency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sovhub.assistant.answer_html import render_markdown
from sovhub.assistant.chat_store import ChatStore
from sovhub.hub import build_hub
from sovhub.settings import load_settings
from sovhub.store.tables import User
from tests.server import RemoteHub

from .conftest import EMAIL, shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DONE = ("() => document.querySelector('#stop').hidden === true "
        "&& document.querySelectorAll('li.message.assistant .actions').length > 0")
OVERFLOW_JS = "document.documentElement.scrollWidth"


def _ask(page: Any, question: str) -> Any:
    page.fill("#content", question)
    page.press("#content", "Enter")
    page.wait_for_function(DONE)
    return page.locator("li.message.assistant").last


def _answer_with_code(server: RemoteHub, conversation_id: str) -> None:
    """An answer with a code block, as a capable model would write it (the bundled one writes 12 tokens)."""
    hub = build_hub(load_settings(data_dir=str(server.data_dir)), migrate=False)
    try:
        with hub.db.session() as s:
            user_id = s.query(User.id).filter(User.email == EMAIL).scalar()
        code = "Here it is:\n\n```python\ndef add(a, b):\n    return a + b\n```\n"
        ChatStore(hub).append(user_id, conversation_id, "assistant", code, html=render_markdown(code))
    finally:
        hub.close()


def test_a_new_chat_rename_search_and_delete(page: Any) -> None:
    sign_in(page)
    before = page.locator("#conversation-list li").count()
    _ask(page, "Where do I register a newborn child?")
    assert page.locator("#conversation-list li").count() == before + 1  # no reload needed
    assert page.locator("#chat-title").inner_text() == "Where do I register a newborn child?"
    assert page.title().startswith("Where do I register a newborn child?")
    page.reload()
    page.click("summary:has-text('Rename')")
    page.fill("#rename-title", "Birth registration")
    page.click("form[action$='/rename'] button[type=submit]")
    page.wait_for_selector("#chat-title:has-text('Birth registration')")
    page.fill("#search-q", "newborn")
    page.press("#search-q", "Enter")
    page.wait_for_selector("#conversation-list")
    assert "Birth registration" in page.locator("#conversation-list").inner_text()
    page.fill("#search-q", "no such words anywhere")
    page.press("#search-q", "Enter")
    page.wait_for_selector("#no-conversations")
    page.goto(page.url.split("?")[0])
    delete_button = page.locator("#delete-confirm button[type=submit]")
    assert not delete_button.is_visible()  # behind the confirmation
    page.click("#delete-confirm summary")
    assert "cannot be undone" in page.locator("#delete-confirm").inner_text()
    shot(page, "delete-confirmation")
    delete_button.click()
    page.wait_for_url("**/")
    assert "Birth registration" not in page.locator(".sidebar").inner_text()


def test_regenerate_keeps_earlier_versions_and_code_has_a_copy_button(page: Any, server: RemoteHub) -> None:
    sign_in(page)
    _ask(page, "Say hello")
    conversation_id = page.url.rstrip("/").split("/")[-1]
    page.click("form[action$='/regenerate'] button")
    page.wait_for_selector("details.versions")  # the page reloads with the earlier answer kept
    assert "1 earlier version" in page.locator("details.versions summary").inner_text()
    _answer_with_code(server, conversation_id)
    page.reload()
    block = page.locator(".code-block").last
    assert block.locator("span.k").first.inner_text() == "def"  # highlighted on the server
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    block.locator("button.copy-code").click()
    page.wait_for_selector("button.copy-code:has-text('Copied')")
    assert "return a + b" in page.evaluate("navigator.clipboard.readText()")
    shot(page, "code-highlighted")


def test_dark_mode_follows_the_system(open_page: Any) -> None:
    page = open_page("en-GB", dark=True)
    sign_in(page)
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    red, green, blue = (int(v) for v in background[background.index("(") + 1:-1].split(",")[:3])
    assert red + green + blue < 150, background
    shot(page, "chat-dark")


@pytest.mark.parametrize("path", ["/", "/me", "/admin", "/transparency", "/admin/requests", "/admin/usage",
                                  "/admin/backends", "/admin/people", "/admin/appeals", "/credits", "/admin/credits"])
def test_the_phone_layout_has_no_horizontal_overflow(open_page: Any, path: str) -> None:
    page = open_page("en-GB", phone=True)
    sign_in(page)
    page.goto(path)
    assert page.evaluate(OVERFLOW_JS) <= 390, path
    if path == "/":
        chat, sidebar = page.locator(".chat").bounding_box(), page.locator(".sidebar").bounding_box()
        assert chat["y"] < sidebar["y"]  # the chat before the list
        assert page.evaluate("getComputedStyle(document.getElementById('composer')).position") == "static"
        assert page.locator(".topbar").bounding_box()["height"] < 140  # at most two rows
    shot(page, "phone" + (path.replace("/", "-") if path != "/" else "-chat"))


def test_attach_a_document_and_ask_about_it(page: Any, tmp_path: Path) -> None:
    sign_in(page)
    _ask(page, "I have a question about my lease")
    lease = tmp_path / "lease.txt"
    lease.write_text("Tenancy agreement.\n\nThe monthly rent is 731 euros, paid on the third day of each month.\n")
    page.click(".attach summary")
    page.set_input_files("#attach-file", str(lease))
    page.click("form[action$='/attachments'] button[type=submit]")
    page.wait_for_selector(".attachments li")
    assert "lease.txt" in page.locator(".attachments").inner_text()
    _ask(page, "What is the monthly rent?")
    shot(page, "attachment")
    page.click(".attachments a")
    page.wait_for_selector(".passage-text")
    assert "731 euros" in page.locator(".passage-text").first.inner_text()


def test_the_transparency_page_is_styled_and_translated(open_page: Any) -> None:
    page = open_page("uk-UA")
    page.goto("/transparency")
    assert page.locator("h1").inner_text() == "Звіт про прозорість"
    assert page.locator("link[rel=stylesheet]").count() == 1
    assert "Суверенітет даних" in page.locator("main").inner_text()
    shot(page, "transparency-uk")
