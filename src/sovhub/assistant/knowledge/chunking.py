"""Split page text into overlapping passages that end at sentence boundaries.

Sizes are in estimated tokens rather than characters: a Japanese or Chinese character costs
about one token of multilingual-e5's vocabulary, a Latin or Cyrillic word several characters
per token, so a character budget would overfill CJK passages past the model's 512-token window.
Every chunk is an exact slice ``page_text[start:end]``, so a citation can highlight it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sovhub import linear_re

__all__ = ["Chunk", "chunk_pages", "estimate_tokens", "sentence_spans"]

_CJK = linear_re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
# A sentence ends after terminal punctuation (plus closing quotes/brackets) followed by space,
# after a full-width terminator, or at a blank line.
# RE2 has no lookbehind: the terminator is matched and the boundary is the span of group 1
# (the whitespace after it), the point just after a full-width terminator (group 2), or a blank line.
_S = linear_re.SPACE
_BOUNDARY = linear_re.compile(
    f"(?:[.!?…؟][\"'»”’)\\]]|[.!?…؟;])([{_S}]+)|([。！？])|(\\n[{_S}]*\\n)")
# A place a long sentence may be cut: a whitespace run, or just after a CJK character.
_CUT = linear_re.compile(f"([{_S}]+)|([\\x{{3000}}-\\x{{9fff}}])")


def _boundary(match: linear_re.Match) -> tuple[int, int]:
    if match.group(2):  # full-width terminator
        return match.end(2), match.end(2)
    group = 1 if match.group(1) else 3  # whitespace after a terminator, or a blank line
    return match.start(group), match.end(group)


@dataclass(frozen=True, slots=True)
class Chunk:
    page: int | None
    start: int
    end: int
    text: str


def estimate_tokens(text: str) -> int:
    cjk = len(_CJK.findall(text))
    return cjk + (len(text) - cjk + 3) // 4


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, surrounding whitespace excluded."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for match in _BOUNDARY.finditer(text):
        cut_start, cut_end = _boundary(match)
        spans.extend(_trim(text, pos, cut_start))
        pos = cut_end
    spans.extend(_trim(text, pos, len(text)))
    return spans


def _trim(text: str, start: int, end: int) -> list[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return [(start, end)] if end > start else []


def _split_long(text: str, span: tuple[int, int], max_tokens: int) -> list[tuple[int, int]]:
    """Cut a sentence longer than a chunk at word boundaries (or anywhere, for unspaced scripts)."""
    start, end = span
    pieces: list[tuple[int, int]] = []
    while estimate_tokens(text[start:end]) > max_tokens:
        cut = start + 1
        # Grow the piece word by word until the budget is reached.
        for match in _CUT.finditer(text[start:end]):
            candidate = start + (match.start() if match.group(1) else match.end())
            if candidate <= start:
                continue
            if estimate_tokens(text[start:candidate]) > max_tokens:
                break
            cut = candidate
        if cut == start + 1:  # one unbroken run: cut by characters
            cut = start + max(1, max_tokens)
        pieces.extend(_trim(text, start, cut))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    pieces.extend(_trim(text, start, end))
    return pieces


def chunk_text(text: str, page: int | None, max_tokens: int, overlap_tokens: int) -> list[Chunk]:
    spans: list[tuple[int, int]] = []
    for span in sentence_spans(text):
        spans.extend(_split_long(text, span, max_tokens))
    if not spans:
        return []
    costs = [estimate_tokens(text[s:e]) for s, e in spans]
    chunks: list[Chunk] = []
    first = 0
    while first < len(spans):
        last, total = first, costs[first]
        while last + 1 < len(spans) and total + costs[last + 1] <= max_tokens:
            last += 1
            total += costs[last]
        start, end = spans[first][0], spans[last][1]
        chunks.append(Chunk(page, start, end, text[start:end]))
        if last + 1 >= len(spans):
            break
        # The next chunk repeats the trailing sentences worth `overlap_tokens`, yet always advances.
        nxt, carried = last + 1, 0
        while nxt - 1 > first and carried + costs[nxt - 1] <= overlap_tokens:
            nxt -= 1
            carried += costs[nxt]
        first = nxt
    return chunks


def chunk_pages(pages: list[str], paged: bool, max_tokens: int = 200, overlap_tokens: int = 40) -> list[Chunk]:
    """Chunks of every page, numbered from 1 for paged documents (PDF), page None otherwise."""
    if max_tokens < 16 or not 0 <= overlap_tokens < max_tokens:
        raise ValueError("max_tokens must be >= 16 and 0 <= overlap_tokens < max_tokens")
    out: list[Chunk] = []
    for number, text in enumerate(pages, start=1):
        out.extend(chunk_text(text, number if paged else None, max_tokens, overlap_tokens))
    return out
