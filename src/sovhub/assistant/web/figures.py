"""Charts a template draws through ``figures``, with the data as a table beside each (:mod:`sovhub.charts`).

Every page gets a fresh :class:`Figures` in its context. Titles, axis names and descriptions come
from the template, so they pass through the catalogs like any other text; the drawings are kept
so :func:`~sovhub.assistant.web.render.render` can allow exactly their style blocks in the page's
Content-Security-Policy.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

from ...charts import Chart, Series, bar_chart, style_sources
from ...credits.amounts import MICRO, format_credits
from ..i18n import UiLocale

__all__ = ["Figures"]


class Figures:
    def __init__(self, ui: UiLocale) -> None:
        self.ui = ui
        self.drawn: list[Chart] = []

    def credits(self, rows: Sequence[tuple[object, int]], *, title: str, x_title: str, series: str, unit: str,
                description: str, label: str = "%(id)s", none_label: str = "?") -> Markup:
        """Bars of (label, micro-credits) rows; the table writes each amount exactly, in credits.

        A row's label is written through `label` (``%(id)s`` is the row's own), `none_label` for None."""
        labels = [str(none_label) if key is None else str(label) % {"id": key} for key, _ in rows]
        chart = bar_chart(str(title), labels, [Series(str(series), [v / MICRO for _, v in rows])],
                          unit=str(unit), x_title=str(x_title), description=str(description),
                          value_text=lambda v: format_credits(round(v * MICRO)))
        self.drawn.append(chart)
        return Markup(chart.html())

    def style_sources(self) -> list[str]:
        return style_sources(self.drawn)
