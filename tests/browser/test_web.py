"""The web assistant in a real browser: sign in, streaming, languages and RTL, citations, export, a11y."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# WCAG 2.x relative luminance and contrast, computed on the rendered page (computed colours,
# the background taken from the nearest ancestor that paints one).
CONTRAST_JS = """
(selectors) => {
  const parse = (c) => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(',').map(Number); return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  const lum = ({r, g, b}) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const background = (el) => { for (let n = el; n; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor); if (c && c.a > 0.5) return c; }
    return {r: 255, g: 255, b: 255, a: 1}; };
  const out = [];
  for (const sel of selectors) {
    for (const el of document.querySelectorAll(sel)) {
      if (!el.offsetParent && getComputedStyle(el).position !== 'fixed') continue;
      const fg = parse(getComputedStyle(el).color), bg = background(el);
      const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
      out.push({sel, text: el.textContent.trim().slice(0, 30), ratio: (a + 0.05) / (b + 0.05)});
    }
  }
  return out;
}
"""

UNLABELLED_JS = """
() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button, a[href]')]
  .filter((el) => el.offsetParent !== null)
  .filter((el) => {
    const named = (el.labels && [...el.labels].some((l) => l.textContent.trim())) || el.getAttribute('aria-label')
      || (el.tagName === 'BUTTON' || el.tagName === 'A') && el.textContent.trim();
    return !named;
  }).map((el) => el.outerHTML.slice(0, 80))
"""


def _ask(page: Any, question: str) -> Any:
    page.fill("#content", question)
    page.press("#content", "Enter")
    answer = page.locator("li.message.assistant").last
    # The text arrives as a stream; then the server's sanitised HTML replaces it.
    page.wait_for_function("() => document.querySelector('#stop').hidden === true "
                           "&& document.querySelectorAll('li.message.assistant .actions').length > 0")
    return answer


def test_sign_in_and_a_streamed_answer_appears(page: Any) -> None:
    sign_in(page)
    deltas: list[str] = []
    page.on("response", lambda r: deltas.append(r.headers.get("content-type", "")) if "/c" in r.url else None)
    answer = _ask(page, "What is the capital of France?")
    assert answer.locator(".bubble").inner_text().strip() != ""
    assert any(ct.startswith("text/event-stream") for ct in deltas)
    assert page.url.split("/")[-2] == "c"  # the new conversation's address replaced "/"
    page.reload()
    assert page.locator("li.message.user .bubble").first.inner_text() == "What is the capital of France?"
    shot(page, "chat-en")


def test_arabic_makes_the_whole_page_rtl(page: Any) -> None:
    sign_in(page)
    page.select_option("#lang-select", "ar")
    page.click(".lang-switch button")
    page.wait_for_selector("html[dir=rtl][lang=ar]")
    assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"
    # Logical properties mirror the layout: the sidebar sits on the right in Arabic.
    sidebar = page.locator(".sidebar").bounding_box()
    chat = page.locator(".chat").bounding_box()
    assert sidebar["x"] > chat["x"]
    assert page.locator("#send").inner_text() == "إرسال"
    shot(page, "chat-ar-rtl")
    page.select_option("#lang-select", "en")
    page.click(".lang-switch button")
    page.wait_for_selector("html[dir=ltr][lang=en]")


def test_the_ukrainian_ui_shows_ukrainian(open_page: Any) -> None:
    page = open_page("uk-UA")
    page.goto("/login")
    assert page.locator("html").get_attribute("lang") == "uk"
    assert page.locator("h1").inner_text() == "Увійти"
    assert page.locator("label[for=password]").inner_text() == "Пароль"
    shot(page, "login-uk")


def test_ingest_a_document_and_see_a_citation(page: Any, tmp_path: Path) -> None:
    sign_in(page)
    document = tmp_path / "passport-guide.md"
    document.write_text("# Passport guide\n\nTo renew a passport, book an appointment at the migration office "
                        "and bring your old passport, a photo and the fee receipt. Renewal takes 20 working days.\n")
    page.goto("/admin")
    page.set_input_files("#kb-file", str(document))
    page.fill("#kb-collection", "gov-uk")  # the en-GB locale's collection: the only one it searches
    page.click("form[action='/admin/kb'] button[type=submit]")
    page.wait_for_selector("p.notice")
    assert "Passport guide" in page.locator("table").first.inner_text()
    page.goto("/")
    answer = _ask(page, "How do I renew my passport?")
    link = answer.locator(".sources a").first
    assert link.get_attribute("href").startswith("/kb/chunks/")
    assert "Passport guide" in link.inner_text()
    shot(page, "citation")
    link.click()
    page.wait_for_selector(".passage-text")
    assert "migration office" in page.locator(".passage-text").inner_text()


def test_export_my_data(page: Any) -> None:
    sign_in(page)
    _ask(page, "Please remember this for my export")
    page.goto("/me")
    with page.expect_download() as info:
        page.click("#export-link")
    data = json.loads(Path(info.value.path()).read_text("utf-8"))
    texts = [m["text"] for c in data["assistant_conversations"] for m in c["messages"]]
    assert "Please remember this for my export" in texts
    shot(page, "my-data")


def test_keyboard_labels_focus_and_contrast(page: Any) -> None:
    sign_in(page)
    page.goto("/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # Every control can be reached with Tab alone and shows where the focus is.
    seen = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        info = page.evaluate("(() => { const e = document.activeElement; const s = getComputedStyle(e); "
                             "return [e.id || e.getAttribute('href') || e.textContent.trim().slice(0, 20), "
                             "s.outlineStyle, s.outlineWidth]; })()")
        if info[0] in seen or info[0] == "Skip to main content":
            break  # wrapped around the page (the skip link's own focus style is checked above)
        seen.add(info[0])
        assert info[1] != "none" and info[2] != "0px", info
    assert {"content", "send", "model"} <= seen
    page.goto("/")  # the header's controls come before main: reached from the top of the page
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "lang-select":
            break
    assert page.evaluate("document.activeElement.id") == "lang-select"
    for path in ("/", "/me", "/admin", "/login"):
        page.goto(path)
        assert page.evaluate(UNLABELLED_JS) == [], path
        ratios = page.evaluate(CONTRAST_JS, ["body p", "a", "label", ".button", ".muted", ".who", "h1", "h2",
                                             "th", "td", ".error", ".notice"])
        low = [r for r in ratios if r["ratio"] < 4.5]
        assert ratios and low == [], (path, low)
    shot(page, "keyboard")
