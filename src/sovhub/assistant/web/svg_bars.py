"""A horizontal bar chart as inline SVG, drawn on the server (no script, no third-party code).

The chart is decoration for the table beside it: it carries ``role="img"`` with a summary
label, and every number is in the table, which is what screen readers and copy-paste use.
Bars grow from the inline start, so the chart mirrors under ``dir="rtl"`` with the page.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

__all__ = ["bar_chart"]

_ROW = 22
_LABEL_W = 160
_BAR_W = 320
_VALUE_W = 90


def bar_chart(items: Sequence[tuple[str, float]], *, label: str, value_text: Sequence[str] | None = None,
              rtl: bool = False) -> Markup:
    """Bars for (name, value) pairs, longest for the largest; `value_text` are the printed values."""
    if not items:
        return Markup("")
    peak = max(v for _, v in items) or 1.0
    width = _LABEL_W + _BAR_W + _VALUE_W
    height = _ROW * len(items) + 4
    texts = list(value_text) if value_text is not None else [f"{v:g}" for _, v in items]
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">']
    for i, ((name, value), shown) in enumerate(zip(items, texts, strict=True)):
        y = i * _ROW + 2
        bar = max(1.0, _BAR_W * value / peak) if value > 0 else 0.0
        short = name if len(name) <= 22 else name[:21] + "…"
        if rtl:
            parts.append(f'<text x="{width - 4}" y="{y + 15}" text-anchor="end">{escape(short)}</text>')
            parts.append(f'<rect class="bar-fill" x="{width - _LABEL_W - bar:.1f}" y="{y + 3}" '
                         f'width="{bar:.1f}" height="{_ROW - 8}" rx="2"/>')
            parts.append(f'<text x="{width - _LABEL_W - bar - 4:.1f}" y="{y + 15}" '
                         f'text-anchor="end">{escape(shown)}</text>')
        else:
            parts.append(f'<text x="4" y="{y + 15}">{escape(short)}</text>')
            parts.append(f'<rect class="bar-fill" x="{_LABEL_W}" y="{y + 3}" width="{bar:.1f}" '
                         f'height="{_ROW - 8}" rx="2"/>')
            parts.append(f'<text x="{_LABEL_W + bar + 4:.1f}" y="{y + 15}">{escape(shown)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
