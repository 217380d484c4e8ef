"""Charts drawn on the server as accessible SVG, each with its data as an HTML table beside it.

Drawn by pygal (from PyPI); the page gets plain markup: no script, no CDN, nothing fetched.
Each SVG names itself for assistive technology (``role="img"``, a ``<title>`` and a ``<desc>``
it is labelled by), and :meth:`Chart.html` puts the same numbers in a table, so nobody needs the
picture to read the data. One API for any capability's charts (credits used per day, energy per
model...)::

    chart = line_chart("Credits used per day", ["05-01", "05-02"], [Series("acme", [1.5, 2.0])],
                       unit="credits")
    page += chart.html()

pygal styles each drawing with a ``<style>`` block of its own; a page served under a strict
Content-Security-Policy (``style-src 'self'``) allows exactly those blocks by their hashes
(:func:`style_sources`), so no other inline style runs.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Chart", "Series", "bar_chart", "chart", "line_chart", "style_sources"]

Kind = Literal["line", "bar", "stacked_bar"]
_SCRIPT = re.compile(r"<script\b.*?</script>", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_ROOT = re.compile(r"<svg\b([^>]*)>")
_STYLE = re.compile(r"<style\b[^>]*>(.*?)</style>", re.S)


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

    @property
    def styles(self) -> tuple[str, ...]:
        """The text of the drawing's ``<style>`` blocks (what a page's CSP must allow)."""
        return tuple(_STYLE.findall(self.svg))


def style_sources(charts: Iterable[Chart]) -> list[str]:
    """CSP ``style-src`` sources allowing these charts' style blocks and nothing else."""
    found: dict[str, None] = {}
    for drawn in charts:
        for text in drawn.styles:
            digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
            found[f"'sha256-{digest}'"] = None
    return list(found)


def _describe(kind: Kind, title: str, x_labels: Sequence[str], series: Sequence[Series], unit: str) -> str:
    shape = {"line": "Line chart", "bar": "Bar chart", "stacked_bar": "Stacked bar chart"}[kind]
    names = ", ".join(s.name for s in series) or "no series"
    span = f"from {x_labels[0]} to {x_labels[-1]}" if x_labels else "with no points"
    return f"{shape}: {title}, {len(series)} series ({names}) {span}, in {unit}. The table beside it gives every value."


ValueText = Callable[[float | int], str]


def _table(title: str, x_title: str, x_labels: Sequence[str], series: Sequence[Series], unit: str,
           value_text: ValueText) -> str:
    e = html.escape
    head = f'<th scope="col">{e(x_title)}</th>' + "".join(
        f'<th scope="col">{e(s.name)} ({e(unit)})</th>' for s in series)
    def cell(s: Series, i: int) -> str:
        value = s.values[i] if i < len(s.values) else None
        return f"<td>{'' if value is None else e(value_text(value))}</td>"

    rows = []
    for i, label in enumerate(x_labels):
        cells = "".join(cell(s, i) for s in series)
        rows.append(f'<tr><th scope="row">{e(label)}</th>{cells}</tr>')
    return (f"<table><caption>{e(title)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _number(value: float | int) -> str:
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
    value_text: ValueText | None = None,
) -> Chart:
    """Draw `series` over `x_labels`; every series has one value (or None) per label.

    `value_text` writes a value in the table (in the reader's notation); plain decimals otherwise."""
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
    return Chart(title, text, svg, _table(title, x_title or "", x_labels, series, unit, value_text or _number))


def line_chart(title: str, x_labels: Sequence[str], series: Sequence[Series], *, unit: str, x_title: str = "",
               description: str | None = None, value_text: ValueText | None = None) -> Chart:
    return chart("line", title, x_labels, series, unit=unit, x_title=x_title, description=description,
                 value_text=value_text)


def bar_chart(title: str, x_labels: Sequence[str], series: Sequence[Series], *, unit: str, x_title: str = "",
              description: str | None = None, stacked: bool = False, value_text: ValueText | None = None) -> Chart:
    return chart("stacked_bar" if stacked else "bar", title, x_labels, series, unit=unit, x_title=x_title,
                 description=description, value_text=value_text)
