"""Text out of PDF, HTML, Markdown and plain-text files, page by page, with a title.

Offsets stored with each chunk point into the page text returned here, so this module is the
one definition of "the text of page N" that citations refer to.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import PurePath

from sovhub import linear_re

from ...errors import InvalidRequest

__all__ = ["SUFFIXES", "Extracted", "extract", "media_type_for"]

log = logging.getLogger("sovhub.assistant.knowledge")

SUFFIXES: dict[str, str] = {
    ".pdf": "application/pdf",
    ".html": "text/html",
    ".htm": "text/html",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
    ".text": "text/plain",
}


@dataclass(slots=True)
class Extracted:
    title: str
    media_type: str
    # PDF: one entry per page (page numbers 1..n); other formats: the whole text as one "page".
    pages: list[str]
    paged: bool


def media_type_for(name: str) -> str:
    suffix = PurePath(name).suffix.lower()
    try:
        return SUFFIXES[suffix]
    except KeyError:
        supported = ", ".join(sorted(SUFFIXES))
        raise InvalidRequest(
            f"{name}: unsupported file type {suffix or '(none)'}; supported: {supported}", code="unsupported_file_type"
        ) from None


def extract(name: str, data: bytes) -> Extracted:
    """Extract a document; raise InvalidRequest when it is unreadable or holds no text."""
    media_type = media_type_for(name)
    stem = PurePath(name).stem
    if media_type == "application/pdf":
        result = _pdf(name, data, stem)
    else:
        text = _decode(name, data)
        if media_type == "text/html":
            result = _html(text, stem)
        elif media_type == "text/markdown":
            result = Extracted(_markdown_title(text) or stem, media_type, [text], paged=False)
        else:
            result = Extracted(_first_line(text) or stem, media_type, [text], paged=False)
    if not any(p.strip() for p in result.pages):
        raise InvalidRequest(
            f"{name}: no extractable text (a scanned PDF needs OCR first)", code="empty_document"
        )
    result.title = result.title.strip()[:500] or stem
    return result


def _decode(name: str, data: bytes) -> str:
    encoding = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})", code="bad_encoding") from exc


def _pdf(name: str, data: bytes, stem: str) -> Extracted:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise InvalidRequest(f"{name}: the PDF is password-protected", code="encrypted_document")
        pages = [_clean_pdf_text(page.extract_text() or "") for page in reader.pages]
        title = str(reader.metadata.get("/Title") or "") if reader.metadata is not None else ""
    except InvalidRequest:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest(f"{name}: not a readable PDF ({exc})", code="unreadable_document") from exc
    if not title.strip():
        title = next((_first_line(p) for p in pages if p.strip()), "") or stem
    return Extracted(title, "application/pdf", pages, paged=True)


_HYPHEN_BREAK = linear_re.compile(f"([{linear_re.WORD}])-\\n([{linear_re.WORD}])")
_BLANKS = linear_re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = linear_re.compile(r"\n{3,}")


def _clean_pdf_text(text: str) -> str:
    # pypdf keeps hyphenated line breaks ("Verwal-\ntung"); joining them helps both FTS and embeddings.
    return _HYPHEN_BREAK.sub(r"\1\2", text)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


def _markdown_title(text: str) -> str:
    """The first ``# Heading`` (closing hashes dropped), else the first line.

    A scan of lines, not a regex: ``^#\\s+(.+?)\\s*#*\\s*$`` took cubic time on long runs of spaces.
    """
    for line in text.splitlines():
        if len(line) > 1 and line[0] == "#" and line[1] in " \t":
            title = line[1:].strip().rstrip("#").rstrip()
            if title:
                return title[:200]
    return _first_line(text).lstrip("# ")


class _HtmlText(HTMLParser):
    """Visible text with line breaks at block elements; scripts, styles and navigation dropped."""

    SKIP = frozenset({"script", "style", "noscript", "template", "nav", "svg", "head"})
    BLOCK = frozenset({
        "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table",
        "section", "article", "header", "footer", "main", "aside", "blockquote", "pre", "dd", "dt", "hr",
    })

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self.h1_parts: list[str] = []
        self._skip = 0
        self._in_title = False
        self._in_h1 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in self.SKIP:
            self._skip += 1
        if tag == "h1":
            self._in_h1 = True
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in self.SKIP and self._skip:
            self._skip -= 1
        if tag == "h1":
            self._in_h1 = False
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)
        if self._skip:
            return
        if self._in_h1:
            self.h1_parts.append(data)
        self.parts.append(data)


def _html(text: str, stem: str) -> Extracted:
    parser = _HtmlText()
    parser.feed(text)
    parser.close()
    lines = [_BLANKS.sub(" ", line).strip() for line in "".join(parser.parts).split("\n")]
    body = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
    title = " ".join("".join(parser.title_parts).split()) or " ".join("".join(parser.h1_parts).split())
    return Extracted(title or _first_line(body) or stem, "text/html", [body], paged=False)
