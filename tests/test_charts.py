"""Server-drawn charts: accessible SVG without scripts, the same numbers in a table."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from sovhub.charts import Series, bar_chart, line_chart


def test_svg_is_labelled_for_assistive_technology_and_has_no_script_or_remote_fetch() -> None:
    chart = line_chart("Credits <used> per day", ["2027-05-01", "2027-05-02", "2027-05-03"],
                       [Series("acme & co", [1.5, None, 3]), Series("beta", [0, 2, 0.000001])], unit="credits")
    root = ET.fromstring(chart.svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.get("role") == "img"
    title_id, desc_id = root.get("aria-labelledby").split()
    assert root[0].tag == f"{ns}title" and root[0].get("id") == title_id and root[0].text == "Credits <used> per day"
    assert root[1].tag == f"{ns}desc" and root[1].get("id") == desc_id and "2 series" in root[1].text
    assert "<script" not in chart.svg and "//kozea" not in chart.svg and "<!--" not in chart.svg
    assert "acme &amp; co" in chart.table and "&lt;used&gt;" in chart.table
    assert '<th scope="row">2027-05-02</th><td></td><td>2</td>' in chart.table
    assert "<td>0.000001</td>" in chart.table
    assert chart.html().startswith('<figure class="chart"><svg')


def test_bar_charts_stack_and_mismatched_series_are_refused() -> None:
    chart = bar_chart("Energy per model", ["m1", "m2"], [Series("kWh", [1, 2])], unit="kWh", stacked=True)
    assert "Stacked bar chart" in chart.description
    with pytest.raises(ValueError):
        bar_chart("x", ["a", "b"], [Series("s", [1])], unit="u")


def test_drawing_leaves_no_import_hook_behind() -> None:
    import sys

    line_chart("x", ["a"], [Series("s", [1])], unit="u")
    assert not [f for f in sys.meta_path if type(f).__name__ == "PluginImportFixer"]


def test_the_table_writes_values_in_the_callers_notation() -> None:
    chart = bar_chart("Credits", ["a", "b"], [Series("used", [0.000001, 12.5])], unit="credits",
                      value_text=lambda v: f"{v:.6f}".replace(".", ","))
    assert "<td>0,000001</td>" in chart.table and "<td>12,500000</td>" in chart.table


def test_style_sources_allow_exactly_the_drawings_own_style_blocks() -> None:
    import base64
    import hashlib
    import re

    from sovhub.charts import style_sources

    one = bar_chart("x", ["a"], [Series("s", [1])], unit="u")
    two = line_chart("y", ["a", "b"], [Series("s", [1, 2])], unit="u")
    blocks = re.findall(r"<style[^>]*>(.*?)</style>", one.svg + two.svg, re.S)
    assert blocks and one.styles and two.styles
    expected = {"'sha256-" + base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() + "'" for b in blocks}
    sources = style_sources([one, two, one])
    assert set(sources) == expected and len(sources) == len(expected)  # each once
    # Each drawing's style names its own chart id: one drawing's hash never allows another's block.
    assert not set(style_sources([one])) & set(style_sources([two]))
