"""A bar chart as accessible SVG, drawn on the server (no script): a titled image whose numbers are also in a
table beside it, so a screen reader and a copy-paste get the same data."""

from __future__ import annotations

from html import escape

from markupsafe import Markup

__all__ = ["bar_chart"]


def bar_chart(labels: list[str], values: list[float], *, title: str, chart_id: str, unit: str = "",
              width: int = 640, height: int = 220) -> Markup:
    """Bars of `values` under `labels`; `title` (translated by the caller) names the chart for assistive tech."""
    top = max(values, default=0.0) or 1.0
    pad_left, pad_bottom, pad_top = 48, 40, 16
    inner_w, inner_h = width - pad_left - 8, height - pad_bottom - pad_top
    step = inner_w / max(1, len(values))
    bar = max(2.0, step * 0.7)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}" '
             f'aria-labelledby="{chart_id}-title"><title id="{chart_id}-title">{escape(title)}</title>',
             f'<line x1="{pad_left}" y1="{pad_top + inner_h}" x2="{width - 8}" y2="{pad_top + inner_h}" '
             'stroke="currentColor" stroke-width="1"/>',
             f'<text x="{pad_left - 6}" y="{pad_top + 4}" text-anchor="end" font-size="11">{_num(top)}</text>',
             f'<text x="{pad_left - 6}" y="{pad_top + inner_h}" text-anchor="end" font-size="11">0</text>']
    every = max(1, len(labels) // 8)
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = inner_h * (value / top)
        x = pad_left + i * step + (step - bar) / 2
        parts.append(f'<rect x="{x:.1f}" y="{pad_top + inner_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                     f'fill="currentColor" opacity="0.75"><title>{escape(label)}: {_num(value)}'
                     f'{escape(unit)}</title></rect>')
        if i % every == 0:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{height - pad_bottom + 16}" text-anchor="middle" '
                         f'font-size="11">{escape(label[-5:])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _num(value: float) -> str:
    return f"{value:.3g}"
