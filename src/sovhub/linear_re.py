"""Linear-time regular expressions (RE2) for every pattern that reads user text.

Python's :mod:`re` backtracks, so a pattern over chat text, documents or model output can take
time exponential (or quadratic) in the input. :func:`compile` builds the pattern with RE2 (the
``google-re2`` binding), whose automaton runs in time linear in the text, and refuses at import
time any pattern RE2 cannot run (lookarounds, backreferences): there is no silent fallback.

RE2's ``\\w \\d \\s \\b`` are ASCII-only, unlike Python's, so :func:`compile` refuses them too;
patterns spell the class out with the Unicode sets below, which match exactly what Python's
``str`` classes match (tests/test_linear_re.py checks this over Latin, Cyrillic, Arabic and CJK).
Which modules may still use :mod:`re` (over trusted input only) is listed in
``tests/test_linear_re.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

import re2

__all__ = ["ALNUM", "DIGIT", "LETTER", "SPACE", "WORD", "LinearPattern", "Match", "PatternRefused", "compile", "escape"]

# Python's str ``\w`` is ``isalnum() or "_"``: every letter and number category, no marks.
WORD = r"\pL\pN_"
# Python's ``[^\W_]``: a word character that is not the underscore.
ALNUM = r"\pL\pN"
# Python's ``[^\W\d_]``: letters and the non-decimal numbers (Roman numerals, superscripts...).
LETTER = r"\pL\p{Nl}\p{No}"
# Python's str ``\d`` is the decimal-digit category.
DIGIT = r"\p{Nd}"
# Python's str ``\s`` (``str.isspace``).
SPACE = (r"\t\n\x0b\f\r\x1c-\x1f \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}"
         r"\x{202f}\x{205f}\x{3000}")

# Escapes whose RE2 meaning (ASCII) differs from Python's (Unicode).
_ASCII_ONLY = frozenset("wWdDsSbB")


class PatternRefused(ValueError):
    """A pattern RE2 cannot run in linear time, or whose meaning would silently change."""


class Match(Protocol):
    def group(self, index: int | str = 0, /) -> str: ...
    def groups(self, default: str | None = None) -> tuple[str | None, ...]: ...
    def start(self, index: int = 0, /) -> int: ...
    def end(self, index: int = 0, /) -> int: ...
    def span(self, index: int = 0, /) -> tuple[int, int]: ...


class LinearPattern(Protocol):
    @property
    def pattern(self) -> str: ...
    def search(self, text: str) -> Match | None: ...
    def match(self, text: str) -> Match | None: ...
    def fullmatch(self, text: str) -> Match | None: ...
    def finditer(self, text: str) -> Iterator[Match]: ...
    def findall(self, text: str) -> list[str]: ...
    def split(self, text: str, maxsplit: int = 0) -> list[str]: ...
    def sub(self, repl: str | Callable[[Match], str], text: str, count: int = 0) -> str: ...


def _check_escapes(pattern: str) -> None:
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            if pattern[i + 1] in _ASCII_ONLY:
                raise PatternRefused(
                    f"\\{pattern[i + 1]} is ASCII-only in RE2 (Unicode in Python's re); spell the class "
                    f"with linear_re.WORD/DIGIT/SPACE in {pattern!r}")
            i += 2
        else:
            i += 1


def compile(pattern: str, *, ignorecase: bool = False, dotall: bool = False) -> LinearPattern:
    """Compile ``pattern`` with RE2; raise :class:`PatternRefused` if RE2 cannot run it as written."""
    _check_escapes(pattern)
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = not ignorecase
    options.dot_nl = dotall
    try:
        compiled: LinearPattern = re2.compile(pattern, options)
    except re2.error as exc:
        raise PatternRefused(f"RE2 cannot run {pattern!r}: {exc}") from exc
    return compiled


def escape(text: str) -> str:
    """Quote ``text`` so it matches literally in an RE2 pattern."""
    return "".join("\\" + c if not (c.isalnum() or c == "_") and ord(c) < 128 else c for c in text)
