"""The monthly statement as an HTML document, in the reader's language, with its charts.

Use per day, per model and per API key is drawn as accessible SVG with the same numbers in a
table (:mod:`sovhub.charts`), and every line names its request id. The words come from the web
app's catalogs (template ``credits_statement.html``); the figures are the statement's own
(:func:`~.statements.statement`), so the HTML, CSV and JSON of a month always agree.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi.responses import HTMLResponse

from ..assistant.i18n import UiCatalogs, UiLocale
from ..assistant.web.render import document
from .amounts import MICRO, format_credits
from .statements import statement_groups

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["reader_locale", "statement_document"]


def reader_locale(hub: Hub, accept_language: str | None) -> UiLocale:
    """The UI language `accept_language` asks for, of the web app's catalogs (English in a hub without
    the assistant's plugin, which owns them)."""
    catalogs = hub.services.get(UiCatalogs) if UiCatalogs in hub.services else UiCatalogs(["en"])
    return catalogs.get(catalogs.negotiate(accept_language))


def statement_document(ui: UiLocale, data: dict[str, Any]) -> HTMLResponse:
    """`data` (a :func:`~.statements.statement`) as a printable page in `ui`'s language."""
    return document(ui, "credits_statement.html", data=data, groups=statement_groups(data),
                    amount=lambda credits: format_credits(round(credits * MICRO)), when=datetime.fromisoformat)
