"""Answers as safe HTML: Markdown rendered with raw HTML disabled, then sanitised with an allow-list.

Two layers on purpose: markdown-it never passes the model's HTML through (``html: False``),
and nh3 (ammonia) removes whatever a renderer bug could still let by: scripts, event handlers,
``javascript:`` links. Links open without a referrer and are marked ``nofollow``.

Fenced code is highlighted here, on the server, by Pygments: the page gets ``<span>`` elements
with Pygments' short token classes (styled in app.css, light and dark), so no script highlights
code in the browser. Only those classes survive the sanitiser.
"""

from __future__ import annotations

from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

__all__ = ["render_markdown"]

_TAGS = {
    "p", "br", "hr", "strong", "em", "del", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody", "tr", "th", "td", "sup", "span",
}
_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}, "ol": {"start"},
               "pre": {"data-lang"}}
_TOKEN_CLASSES = {c for c in STANDARD_TYPES.values() if c}
_CLASSES = {"span": _TOKEN_CLASSES, "pre": {"code"}}
# A model's code block can be long; past this, highlighting costs more than it helps a reader.
MAX_HIGHLIGHT_CHARS = 20_000
_LANG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789+#-_.")


def _highlight(code: str, lang: str, _attrs: str) -> str:
    name = lang.strip().lower()
    if not name or len(code) > MAX_HIGHLIGHT_CHARS or not set(name) <= _LANG_CHARS:
        return ""  # markdown-it escapes and wraps it as plain code
    try:
        lexer = get_lexer_by_name(name)
    except ClassNotFound:
        return ""
    body = highlight(code, lexer, HtmlFormatter(nowrap=True))
    return f'<pre class="code" data-lang="{name}"><code>{body}</code></pre>\n'


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False, "highlight": _highlight})
    return md.enable("table").enable("strikethrough")


def render_markdown(text: str) -> str:
    """Sanitised HTML for an answer's Markdown."""
    html = _parser().render(text)
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        allowed_classes=_CLASSES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
