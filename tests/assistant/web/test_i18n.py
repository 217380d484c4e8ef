"""Catalogs are complete, templates hold no untranslated text, negotiation and formatting work."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from jinja2 import Environment
from jinja2.lexer import TOKEN_DATA

from sovhub.assistant.i18n import CATALOG_DIR, TEMPLATE_PATH, UiCatalogs, parse_accept_language
from sovhub.errors import ConfigError

LANGUAGES = ["en", "uk", "pl", "de", "fr", "es", "ar", "ja"]
TEMPLATES = Path(__file__).resolve().parents[3] / "src" / "sovhub" / "web_assets" / "templates"
# Attributes people read (or hear through a screen reader): they must be translated too.
_READ_ATTRIBUTES = {"aria-label", "title", "placeholder", "alt"}
_BUTTON_INPUTS = {"submit", "button", "reset"}
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)


def _catalog(lang: str):  # type: ignore[no-untyped-def]
    with (CATALOG_DIR / lang / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        return read_po(fh, locale=lang)


def _template_ids() -> set[object]:
    mapping = [("**.html", "jinja2")]
    options = {"**.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "True", "lstrip_blocks": "True"}}
    ids: set[object] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(str(TEMPLATES), mapping, options):
        ids.add(message)
    return ids


def test_template_pot_matches_the_templates() -> None:
    with TEMPLATE_PATH.open("rb") as fh:
        pot = read_po(fh)
    in_pot = {m.id for m in pot if m.id}
    in_templates = {m if isinstance(m, str) else tuple(m) for m in _template_ids()}
    assert in_templates - in_pot == set(), "run pybabel extract (docs/assistant.md) and translate the new strings"
    assert in_pot - in_templates == set(), "messages.pot holds strings no template uses any more"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_catalog_is_complete_and_not_fuzzy(lang: str) -> None:
    with TEMPLATE_PATH.open("rb") as fh:
        wanted = {m.id for m in read_po(fh) if m.id}
    catalog = _catalog(lang)
    problems = []
    have = set()
    for message in catalog:
        if not message.id:
            continue
        have.add(message.id)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy:
            problems.append(f"fuzzy: {message.id!r}")
        if not all(strings) or (isinstance(message.id, tuple) and len(strings) != catalog.num_plurals):
            problems.append(f"untranslated: {message.id!r}")
        placeholders = set(re.findall(r"%\((\w+)\)", str(message.id)))
        for s in strings:
            if s and set(re.findall(r"%\((\w+)\)", s)) - placeholders:
                problems.append(f"unknown placeholder in {s!r}")
    problems += [f"missing: {m!r}" for m in wanted - have]
    assert problems == []


def test_non_english_catalogs_really_translate() -> None:
    # A catalog copied from English would pass the completeness check; most strings must differ.
    en = {m.id: m.string for m in _catalog("en") if m.id and isinstance(m.id, str)}
    for lang in LANGUAGES[1:]:
        same = [m.id for m in _catalog(lang) if m.id in en and m.string == en[m.id]]
        assert len(same) < len(en) * 0.1, f"{lang}: {same}"


class _TextFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_data(self, data: str) -> None:
        if _LETTER.search(data):
            self.found.append(data.strip())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        read = set(_READ_ATTRIBUTES)
        if tag == "input" and dict(attrs).get("type") in _BUTTON_INPUTS:
            read.add("value")  # a button's value is its visible label
        for name, value in attrs:
            if name in read and value and _LETTER.search(value):
                self.found.append(f"{name}={value}")


def untranslated_text(source: str) -> list[str]:
    """Literal words in a template outside {{ }} and {% %}: text nodes and read-aloud attributes."""
    env = Environment(extensions=["jinja2.ext.i18n"])
    parts = []
    for _line, kind, value in env.lex(source):
        # Expressions become a placeholder, so attribute values built from them are not flagged.
        parts.append(value if kind == TOKEN_DATA else "\x00")
    finder = _TextFinder()
    finder.feed("".join(parts).replace("\x00", ""))
    return [t for t in finder.found if t]


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.html")))
def test_templates_hold_no_untranslated_text(template: str) -> None:
    assert untranslated_text((TEMPLATES / template).read_text("utf-8")) == []


def test_the_literal_text_check_catches_a_literal() -> None:
    assert untranslated_text("<p>Hello {{ _('x') }}</p>") == ["Hello"]
    assert untranslated_text('<input placeholder="Your name">') == ["placeholder=Your name"]
    assert untranslated_text('<input type="submit" value="Go">') == ["value=Go"]
    assert untranslated_text("<p>{{ _('Hello') }} · 3</p><b>{{ x }}</b>") == []


def test_negotiation_follows_quality_and_falls_back_to_the_language() -> None:
    catalogs = UiCatalogs(LANGUAGES)
    assert catalogs.negotiate("uk-UA,uk;q=0.9,en;q=0.5") == "uk"
    assert catalogs.negotiate("fr-CA;q=0.4, ar;q=0.8") == "ar"
    assert catalogs.negotiate("pt-BR, ja;q=0.2") == "ja"
    assert catalogs.negotiate("zh, ko;q=0.5") == "en"
    assert catalogs.negotiate("") == "en"
    assert catalogs.negotiate("de;q=0, pl") == "pl"
    assert parse_accept_language("en;q=abc, <script>, de") == ["de"]


def test_formatting_and_plurals_go_through_babel() -> None:
    from datetime import UTC, datetime

    catalogs = UiCatalogs(LANGUAGES)
    uk, ar, de = catalogs.get("uk"), catalogs.get("ar"), catalogs.get("de-AT")
    forms = [uk.ngettext("%(num)d conversation", "%(num)d conversations", n) % {"num": n} for n in (1, 3, 5, 21)]
    assert forms == ["1 розмова", "3 розмови", "5 розмов", "21 розмова"]
    assert ar.ngettext("%(num)d conversation", "%(num)d conversations", 2) == "محادثتان"
    assert ar.direction == "rtl" and uk.direction == "ltr"
    assert de.code == "de" and de.format_number(1234.5) == "1.234,5"
    when = datetime(2025, 3, 4, 15, 30, tzinfo=UTC)
    assert "березня" in uk.format_datetime(when, "long")
    assert catalogs.get("xx").code == "en"


def test_a_language_without_a_catalog_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no catalog"):
        UiCatalogs(["en", "pt"], catalog_dir=tmp_path)
    with pytest.raises(ConfigError, match="not a language"):
        UiCatalogs(["en", "zz-not-a-lang"], catalog_dir=tmp_path)
