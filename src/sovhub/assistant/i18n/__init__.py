"""The web app's UI languages: gettext catalogs (Babel), negotiation, and locale-aware formatting.

Catalogs live as ``locale/<lang>/LC_MESSAGES/messages.po`` next to this file (``messages.pot``
is the template). They are compiled in memory when first needed: no ``.mo`` files are
committed or written, so a translator's edit to a ``.po`` is live at the next start.

    catalogs = hub.services.get(UiCatalogs)
    ui = catalogs.get("uk")
    ui.gettext("Sign in")                         # "Увійти"
    ui.ngettext("%(num)d conversation", "%(num)d conversations", 3) % {"num": 3}
    ui.format_datetime(when)                      # dates and numbers through Babel's CLDR data

A new UI language needs only a new ``.po`` file and its code in ``assistant.languages``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations

from sovhub import linear_re

from ...errors import ConfigError

__all__ = [
    "CATALOG_DIR",
    "DOMAIN",
    "TEMPLATE_PATH",
    "UiCatalogs",
    "UiLocale",
    "parse_accept_language",
]

DOMAIN = "messages"
CATALOG_DIR = Path(__file__).parent / "locale"
TEMPLATE_PATH = Path(__file__).parent / "messages.pot"
# Scripts written right to left; the page gets dir="rtl" and the CSS uses logical properties.
_RTL = {"ar", "fa", "he", "ur", "ps", "yi", "dv", "ckb"}
_TAG = linear_re.compile(r"^[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*$|^\*$")


@dataclass(frozen=True)
class UiLocale:
    """One UI language: its translations and CLDR formatting rules."""

    code: str
    translations: Translations

    @cached_property
    def babel(self) -> Locale:
        return Locale.parse(self.code)

    @property
    def direction(self) -> str:
        return "rtl" if self.code.split("-")[0] in _RTL else "ltr"

    @property
    def native_name(self) -> str:
        name = self.babel.get_display_name(self.babel) or self.code
        return name[:1].upper() + name[1:]

    def gettext(self, message: str) -> str:
        return self.translations.gettext(message)

    def ngettext(self, singular: str, plural: str, count: int) -> str:
        return self.translations.ngettext(singular, plural, count)

    def format_datetime(self, value: datetime, fmt: str = "medium") -> str:
        return format_datetime(value, format=fmt, locale=self.babel)

    def format_number(self, value: float | int) -> str:
        return format_decimal(value, locale=self.babel)


def _compile(po_path: Path, code: str) -> Translations:
    with po_path.open("rb") as fh:
        catalog = read_po(fh, locale=code, domain=DOMAIN)
    buffer = io.BytesIO()
    # Fuzzy entries are left out, as msgfmt does: a guess is not a translation.
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


class UiCatalogs:
    """The compiled catalogs of the configured UI languages (English is the source language)."""

    def __init__(self, languages: list[str], catalog_dir: Path = CATALOG_DIR) -> None:
        self.locales: dict[str, UiLocale] = {}
        for code in languages:
            try:
                Locale.parse(code.replace("-", "_"))
            except (ValueError, UnknownLocaleError) as exc:
                raise ConfigError(f"assistant.languages: {code!r} is not a language Babel knows") from exc
            po_path = catalog_dir / code / "LC_MESSAGES" / f"{DOMAIN}.po"
            if po_path.is_file():
                translations = _compile(po_path, code)
            elif code == "en":
                translations = Translations()  # the msgids are English
            else:
                raise ConfigError(f"assistant.languages lists {code!r} but there is no catalog {po_path}")
            self.locales[code] = UiLocale(code, translations)
        if not self.locales:
            raise ConfigError("assistant.languages is empty: the web app needs at least one UI language")
        self.default = "en" if "en" in self.locales else next(iter(self.locales))

    @property
    def codes(self) -> list[str]:
        return list(self.locales)

    def get(self, code: str | None) -> UiLocale:
        """The catalog for a code (exact, then its language part), else the default one."""
        if code:
            if code in self.locales:
                return self.locales[code]
            base = code.replace("_", "-").split("-")[0].lower()
            if base in self.locales:
                return self.locales[base]
        return self.locales[self.default]

    def supports(self, code: str | None) -> bool:
        return bool(code) and code in self.locales

    def negotiate(self, accept_language: str | None) -> str:
        """The best UI language for an Accept-Language header (quality order; language part as fallback)."""
        for tag in parse_accept_language(accept_language or ""):
            if tag == "*":
                return self.default
            if tag in self.locales:
                return tag
            base = tag.split("-")[0].lower()
            if base in self.locales:
                return base
        return self.default


def parse_accept_language(header: str) -> list[str]:
    """Tags of an Accept-Language header, best first; malformed parts are skipped, q=0 dropped."""
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:32]):
        fields = part.strip().split(";")
        tag = fields[0].strip()
        if not tag or not _TAG.match(tag):
            continue
        quality = 1.0
        for param in fields[1:]:
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            weighted.append((-quality, position, tag.replace("_", "-")))
    weighted.sort()
    return [tag for _, _, tag in weighted]
