"""Answers as safe HTML: Markdown rendered with raw HTML disabled, then sanitised with an allow-list.

Two layers on purpose: markdown-it never passes the model's HTML through (``html: False``),
and nh3 (ammonia) removes whatever a renderer bug could still let by: scripts, event handlers,
``javascript:`` links. Links open without a referrer and are marked ``nofollow``.
"""

from __future__ import annotations

from functools import lru_cache

import nh3
from markdown_it import MarkdownIt

__all__ = ["render_markdown"]

_TAGS = {
    "p", "br", "hr", "strong", "em", "del", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody", "tr", "th", "td", "sup",
}
_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}, "ol": {"start"}}


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table").enable(
        "strikethrough"
    )


def render_markdown(text: str) -> str:
    """Sanitised HTML for an answer's Markdown."""
    html = _parser().render(text)
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
