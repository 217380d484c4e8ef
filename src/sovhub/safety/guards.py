"""The guard interface every safety check implements, and the text normalisation they share.

A guard looks at one text and returns findings: a hazard code from :mod:`sovhub.safety.taxonomy`
(or a PII type from the PII guard), a score in [0, 1] and, where it can say, the span. Guards
never decide what happens: the policy does.

:func:`normalize` is the evasion-resistant view of a text that guards match against. It is
length-bounded and keeps an offset map (:func:`normalize_with_offsets`) so a span found in the
normalised text can be reported in the original one.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sovhub import linear_re

__all__ = [
    "MAX_NORMALIZE_CHARS",
    "Guard",
    "GuardFinding",
    "normalize",
    "normalize_with_offsets",
]

# Guards look at most at this many characters of one text. The endpoint refuses longer inputs;
# the chat interceptor scans long outputs window by window.
# A backstop, not a reading limit: requests are refused above safety.max_input_chars (at most this).
MAX_NORMALIZE_CHARS = 10_000_000


@dataclass(slots=True)
class GuardFinding:
    category: str  # hazard code "S1".."S14" (or a PII entity type from the PII guard)
    score: float
    guard: str
    start: int | None = None
    end: int | None = None


@runtime_checkable
class Guard(Protocol):
    name: str

    def scan(self, text: str, lang: str | None) -> list[GuardFinding]: ...


# Zero-width and bidi controls are all category Cf, removed wholesale below; these are the
# ones that are not Cf but still invisible or used to split words.
_INVISIBLE_EXTRA = frozenset("\u180e\u3164\uffa0\u115f\u1160\u034f")
_KEEP_CONTROL = frozenset("\t\n\r")

# Look-alikes: only folded when the rest of the word tells which script the writer meant.
_TO_LATIN = str.maketrans(
    "аеорсухіјѕԁԛԝһӏкАВЕКМНОРСТХУІЈЅԚԜ" "αορνιικυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
    "aeopcyxijsdqwhlkABEKMHOPCTXYIJSQW" "aopviikuxABEZHIKMNOPTYX",
)
_TO_CYRILLIC = str.maketrans("aeopcyxiABEKMHOPCTX", "аеорсухіАВЕКМНОРСТХ")
# Digits and symbols standing in for letters inside a word ("k1ll", "b0mb").
_LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b"}

_WORD = linear_re.compile(f"[{linear_re.ALNUM}]+")


def _script(ch: str) -> str:
    cp = ord(ch)
    if ch.isascii():
        return "latin" if ch.isalpha() else "other"
    if 0x00C0 <= cp <= 0x024F or 0x1E00 <= cp <= 0x1EFF:
        return "latin"
    if 0x0400 <= cp <= 0x052F:
        return "cyrillic"
    if 0x0370 <= cp <= 0x03FF:
        return "greek"
    return "other"


def _strip_mark(base: str, mark: str) -> bool:
    """Whether a combining mark left after NFKC is noise (Zalgo, Arabic diacritics), not spelling."""
    if 0x064B <= ord(mark) <= 0x065F or mark == "\u0670":
        return True  # Arabic harakat: optional in writing, used to split matched words
    return _script(base) in ("latin", "cyrillic", "greek")


def _fold_word(word: str) -> str:
    latin = other = 0
    for ch in word:
        s = _script(ch)
        if s == "latin":
            latin += 1
        elif s in ("cyrillic", "greek"):
            other += 1
    if latin and other:
        # Mixed-script word: fold towards the majority so "kіll" (Cyrillic і) reads "kill" while a
        # Ukrainian word keeps its letters; a real word is never mixed, so nothing lawful changes.
        word = word.translate(_TO_LATIN if latin >= other else _TO_CYRILLIC)
    if latin and any(c.isdigit() for c in word):
        chars = list(word)
        for i in range(1, len(chars) - 1):
            if chars[i] in _LEET and chars[i - 1].isalpha():
                j = i
                while j < len(chars) and chars[j] in _LEET:
                    j += 1
                if j < len(chars) and chars[j].isalpha():
                    for k in range(i, j):
                        chars[k] = _LEET[chars[k]]
        word = "".join(chars)
    return word


def normalize_with_offsets(text: str, max_chars: int = MAX_NORMALIZE_CHARS) -> tuple[str, list[int]]:
    """Normalised text and, for each of its characters, the index of its source character.

    NFKC (full-width, ligatures, compatibility forms); invisible characters, bidi controls and
    tag characters removed; stray combining marks (Zalgo) and Arabic diacritics and tatweel
    removed; whitespace runs collapsed to one space; mixed-script words folded towards their
    majority script; digits inside words read as letters. Only the first ``max_chars``
    characters are looked at.
    """
    text = text[:max_chars]
    out: list[str] = []
    src: list[int] = []
    n = len(text)
    i = 0
    pending_space = False
    while i < n:
        ch = text[i]
        j = i + 1
        if not ch.isascii():
            while j < n and unicodedata.combining(text[j]):
                j += 1
        cluster = text[i:j]
        start = i
        i = j
        if ch.isspace():
            pending_space = True
            continue
        cat = unicodedata.category(ch)
        if cat in ("Cf", "Cs") or ch in _INVISIBLE_EXTRA or ch == "\u0640" or (cat == "Cc" and ch not in _KEEP_CONTROL):
            continue
        if cat.startswith("M"):
            # A mark with no base (or after a removed character): variation selectors, stray marks.
            continue
        piece = cluster if ch.isascii() and len(cluster) == 1 else unicodedata.normalize("NFKC", cluster)
        kept: list[str] = []
        for c in piece:
            if unicodedata.combining(c) and kept and _strip_mark(kept[0], c):
                continue
            if unicodedata.category(c) == "Cf":
                continue
            kept.append(c)
        if not kept:
            continue
        if pending_space and out:
            out.append(" ")
            src.append(start)
        pending_space = False
        for c in kept:
            if c.isspace():
                if out and out[-1] != " ":
                    out.append(" ")
                    src.append(start)
                continue
            out.append(c)
            src.append(start)
    folded = "".join(out)
    if not folded.isascii() or any(c.isdigit() for c in folded):
        # Folding is 1:1 per character, so the offset map stays valid.
        folded = _WORD.sub(lambda m: _fold_word(m.group(0)), folded)
    return folded, src


def normalize(text: str, max_chars: int = MAX_NORMALIZE_CHARS) -> str:
    """The evasion-resistant form of ``text`` that guards match and embed (see the offsets variant)."""
    return normalize_with_offsets(text, max_chars)[0]
