"""Charts drawn on the server as accessible SVG, each with its data as an HTML table beside it.

Drawn by pygal (from PyPI); the page gets plain markup: no script, no CDN, nothing fetched.
Each SVG names itself for assistive technology (``role="img"``, a ``<title>`` and a ``<desc>``
it is labelled by), and :meth:`Chart.html` puts the same numbers in a table, so nobody needs the
picture to read the data. One API for any capability's charts (credits used per day, energy per
model...)::

    chart = line_chart("Credits used per day", ["05-01", "05-02"], [Series("acme", [1.5, 2.0])],
                       unit="credits")
    page += chart.html()
"""

from __future__ import annotations

import html
import re
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Chart", "Series", "bar_chart", "chart", "line_chart"]

Kind = Literal["line", "bar", "stacked_bar"]
_SCRIPT = re.compile(r"<script\b.*?</script>", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_ROOT = re.compile(r"<svg\b([^>]*)>")


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[float | int | None]


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    description: str
    svg: str
    table: str

    def html(self) -> str:
        """The chart and its table in one ``<figure>``."""
        return (f'<figure class="chart">{self.svg}<figcaption>{html.escape(self.title)}</figcaption>'
                f"{self.table}</figure>")


def _describe(kind: Kind, title: str, x_labels: Sequence[str], series: Sequence[Series], unit: str) -> str:
    shape = {"line": "Line chart", "bar": "Bar chart", "stacked_bar": "Stacked bar chart"}[kind]
    names = ", ".join(s.name for s in series) or "no series"
    span = f"from {x_labels[0]} to {x_labels[-1]}" if x_labels else "with no points"
    return f"{shape}: {title}, {len(series)} series ({names}) {span}, in {unit}. The table beside it gives every value."


def _table(title: str, x_title: str, x_labels: Sequence[str], series: Sequence[Series], unit: str) -> str:
    e = html.escape
    head = f'<th scope="col">{e(x_title)}</th>' + "".join(
        f'<th scope="col">{e(s.name)} ({e(unit)})</th>' for s in series)
    rows = []
    for i, label in enumerate(x_labels):
        cells = "".join(
            f"<td>{'' if i >= len(s.values) or s.values[i] is None else e(_number(s.values[i]))}</td>"
            for s in series)
        rows.append(f'<tr><th scope="row">{e(label)}</th>{cells}</tr>')
    return (f"<table><caption>{e(title)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _number(value: float | int | None) -> str:
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".")
    return str(value)


def _pygal() -> Any:
    import pygal

    # pygal adds an import hook of its own for its maps plugins (pygal.maps.*, unused here) that
    # answers every later import of the process with an ImportWarning: take it out again.
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "PluginImportFixer"]
    return pygal


def chart(
    kind: Kind, title: str, x_labels: Sequence[str], series: Sequence[Series], *, unit: str,
    x_title: str = "", description: str | None = None, width: int = 720, height: int = 360,
) -> Chart:
    """Draw `series` over `x_labels`; every series has one value (or None) per label."""
    pygal = _pygal()

    for s in series:
        if len(s.values) != len(x_labels):
            raise ValueError(f"series {s.name!r} has {len(s.values)} values for {len(x_labels)} labels")
    cls = {"line": pygal.Line, "bar": pygal.Bar, "stacked_bar": pygal.StackedBar}[kind]
    drawing = cls(js=[], disable_xml_declaration=True, width=width, height=height, title=title,
                  x_title=x_title or None, y_title=unit, show_legend=len(series) > 1, x_label_rotation=30,
                  legend_at_bottom=True, truncate_legend=-1, print_values=False)
    drawing.x_labels = list(x_labels)
    for s in series:
        drawing.add(s.name, list(s.values))
    svg = str(drawing.render(is_unicode=True))
    svg = _COMMENT.sub("", _SCRIPT.sub("", svg))
    text = description or _describe(kind, title, x_labels, series, unit)
    ident = "c" + uuid.uuid4().hex[:10]
    labelled = (f'<svg\\1 role="img" aria-labelledby="{ident}-t {ident}-d"><title id="{ident}-t">'
                f'{html.escape(title)}</title><desc id="{ident}-d">{html.escape(text)}</desc>')
    svg = _ROOT.sub(labelled, svg, count=1)
    return Chart(title, text, svg, _table(title, x_title or "", x_labels, series, unit))


def line_chart(title: str, x_labels: Sequence[str], series: Sequence[Series], *, unit: str, x_title: str = "",
               description: str | None = None) -> Chart:
    return chart("line", title, x_labels, series, unit=unit, x_title=x_title, description=description)


def bar_chart(title: str, x_labels: Sequence[str], series: Sequence[Series], *, unit: str, x_title: str = "",
              description: str | None = None, stacked: bool = False) -> Chart:
    return chart("stacked_bar" if stacked else "bar", title, x_labels, series, unit=unit, x_title=x_title,
                 description=description)
