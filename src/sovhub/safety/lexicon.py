"""The per-locale lexicon guard: fast phrase matching over normalised text.

Lexicon files are YAML maps of hazard code to phrases, one file per language
(``data/lexicon/<lang>.yaml``); locale packs add their own directories. Phrases are normalised
like the text (:func:`sovhub.safety.guards.normalize`), so one entry also catches its full-width,
zero-width-split, homoglyph and leetspeak spellings.

A lexicon has no context, so it only holds phrases that are harmful in themselves ("buy
stolen card dumps"), never topics ("sarin", "suicide"): a news report or a help request must not
match. All languages are matched at once by default, because a message's language is a hint,
not a fact, and mixing languages is a cheap evasion.

Matching is linear in the text (RE2 marks where phrases occur, a trie reads those places; see
:class:`_PhraseSet`), with the results the former backtracking pattern gave.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import yaml

from .. import linear_re
from ..errors import ConfigError
from .guards import GuardFinding, normalize, normalize_with_offsets
from .taxonomy import HAZARD_CODES

__all__ = ["DEFAULT_LEXICON_DIR", "LexiconGuard", "load_lexicons"]

log = logging.getLogger("sovhub.safety")

DEFAULT_LEXICON_DIR = Path(__file__).parent / "data" / "lexicon"


def _unspaced(phrase: str) -> bool:
    """Phrases in scripts written without spaces (Japanese, Chinese, Thai) match inside words."""
    for ch in phrase:
        name = unicodedata.name(ch, "")
        if name.startswith(("CJK", "HIRAGANA", "KATAKANA", "THAI", "HANGUL")):
            return True
    return False


def load_lexicons(dirs: Sequence[Path]) -> dict[str, dict[str, set[str]]]:
    """``{lang: {normalised phrase: {hazard codes}}}`` from every ``<lang>.yaml`` in ``dirs``."""
    out: dict[str, dict[str, set[str]]] = {}
    for folder in dirs:
        if not folder.is_dir():
            raise ConfigError(f"lexicon directory not found: {folder}")
        for path in sorted(folder.glob("*.yaml")):
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
            if not isinstance(data, dict):
                raise ConfigError(f"{path}: expected a map of hazard code to phrases")
            table = out.setdefault(path.stem, {})
            for code, phrases in data.items():
                if code not in HAZARD_CODES:
                    raise ConfigError(f"{path}: unknown hazard code {code!r}")
                if not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases):
                    raise ConfigError(f"{path}: {code} must be a list of phrases")
                for phrase in phrases:
                    key = normalize(phrase).casefold()
                    if len(key) < 3:
                        raise ConfigError(f"{path}: phrase {phrase!r} is too short to match safely")
                    table.setdefault(key, set()).add(code)
    return out


# Lower-case letters Python's ``re.IGNORECASE`` takes for one another (they share a capital): each
# maps to the first of its set. With ``str.lower`` this gives one character per character, equal
# exactly when ``re`` would match them ignoring case (tests/safety/test_lexicon_linear.py derives
# the table from the Unicode data and checks it against ``re``).
_SAME_LETTER = str.maketrans({
    "\u0131": "i", "\u017f": "s", "\u00b5": "\u03bc", "\u0345": "\u03b9", "\u1fbe": "\u03b9",
    "\u1fd3": "\u0390", "\u1fe3": "\u03b0", "\u03d0": "\u03b2", "\u03f5": "\u03b5", "\u03d1": "\u03b8",
    "\u03f0": "\u03ba", "\u03d6": "\u03c0", "\u03f1": "\u03c1", "\u03c2": "\u03c3", "\u03d5": "\u03c6",
    "\u1c80": "\u0432", "\u1c81": "\u0434", "\u1c82": "\u043e", "\u1c83": "\u0441", "\u1c84": "\u0442",
    "\u1c85": "\u0442", "\u1c86": "\u044a", "\u1c87": "\u0463", "\ua64b": "\u1c88", "\u1e9b": "\u1e61",
    "\ufb06": "\ufb05",
})


def _fold_case(text: str) -> str:
    """``text`` with one character per character, two of them equal when ``re.IGNORECASE`` matches them.

    ``str.lower`` maps one character to one, except U+0130 (I with dot above, whose simple lower
    case is ``i``, as ``re`` reads it).
    """
    lowered = text.replace("\u0130", "i").lower()
    return lowered if lowered.isascii() else lowered.translate(_SAME_LETTER)


def _is_word(ch: str) -> bool:
    """Python's ``\\w`` on ``str``."""
    return ch.isalnum() or ch == "_"


class _Node:
    __slots__ = ("next", "spaced", "unspaced")

    def __init__(self) -> None:
        self.next: dict[str, _Node] = {}
        self.spaced = False  # a phrase that must stand at word boundaries ends here
        self.unspaced = False  # a phrase of a script without spaces (matched inside words) ends here


class _PhraseSet:
    """Phrases found in linear time: RE2 finds where any of them occurs, a trie reads each place.

    The result is what Python's ``re`` gave for ``(?<!\\w)(?:spaced, longest first)(?!\\w)|(?:unspaced,
    longest first)`` with ``finditer`` and IGNORECASE: scanning left to right, at each position the
    longest spaced phrase standing between word boundaries, else the longest unspaced phrase, then
    on from its end. RE2 has no lookaround and its ``finditer`` does not overlap, so it only marks
    the places: every position where some phrase starts lies inside one of its matches (a phrase
    starting between two matches would have been the second match), and the trie is walked from
    each position there, at most the longest phrase's length each.
    """

    def __init__(self, phrases: Sequence[str]) -> None:
        self.root = _Node()
        folded: set[str] = set()
        for phrase in phrases:
            key = _fold_case(phrase)
            folded.add(key)
            node = self.root
            for ch in key:
                node = node.next.setdefault(ch, _Node())
            if _unspaced(phrase):
                node.unspaced = True
            else:
                node.spaced = True
        # Longest first only to keep RE2's matches long; any order would mark the same places.
        ordered = sorted(folded, key=lambda p: (-len(p), p))
        self.places = linear_re.compile("|".join(linear_re.escape(p) for p in ordered))

    def spans(self, norm: str) -> list[tuple[int, int]]:
        folded = _fold_case(norm)
        out: list[tuple[int, int]] = []
        pos = 0
        for m in self.places.finditer(folded):
            i, stop = max(m.start(), pos), m.end()
            while i < stop:
                end = self._longest_at(folded, norm, i)
                if end:
                    out.append((i, end))
                    i = pos = end
                else:
                    i += 1
        return out

    def _longest_at(self, folded: str, norm: str, i: int) -> int:
        """The end of the phrase the scan takes at ``i`` (0 for none)."""
        n = len(folded)
        at_word_start = i == 0 or not _is_word(norm[i - 1])
        spaced = unspaced = 0
        node = self.root
        j = i
        while j < n:
            step = node.next.get(folded[j])
            if step is None:
                break
            node = step
            j += 1
            if node.spaced and at_word_start and (j == n or not _is_word(norm[j])):
                spaced = j
            if node.unspaced:
                unspaced = j
        return spaced or unspaced


def _compile(phrases: Sequence[str]) -> _PhraseSet | None:
    return _PhraseSet(phrases) if phrases else None


class LexiconGuard:
    """Phrase matcher over all (or one) locale's lexicons; every match is a finding with score 1."""

    name = "lexicon"

    def __init__(self, extra_dirs: Sequence[Path] = (), *, base_dir: Path | None = DEFAULT_LEXICON_DIR,
                 match_all_locales: bool = True) -> None:
        dirs = ([base_dir] if base_dir is not None else []) + list(extra_dirs)
        self.tables = load_lexicons(dirs)
        self.match_all_locales = match_all_locales
        self.phrases: dict[str, set[str]] = {}
        for table in self.tables.values():
            for phrase, codes in table.items():
                self.phrases.setdefault(phrase, set()).update(codes)
        self._all = _compile(list(self.phrases))
        self._by_lang = {lang: _compile(list(t)) for lang, t in self.tables.items()}
        log.debug("lexicon: %d phrases in %d locales", len(self.phrases), len(self.tables))

    def _pattern(self, lang: str | None) -> _PhraseSet | None:
        if self.match_all_locales or not lang:
            return self._all
        base = lang.split("-")[0].split("_")[0].lower()
        return self._by_lang.get(base, self._all)

    def scan(self, text: str, lang: str | None) -> list[GuardFinding]:
        if not text:
            return []
        norm, offsets = normalize_with_offsets(text)
        return self.scan_normalized(norm, offsets, lang)

    def scan_normalized(self, norm: str, offsets: list[int], lang: str | None) -> list[GuardFinding]:
        """Scan text already passed through :func:`normalize_with_offsets` (spans map back through it)."""
        pattern = self._pattern(lang)
        if pattern is None:
            return []
        findings: list[GuardFinding] = []
        for first, last in pattern.spans(norm):
            codes = self.phrases.get(norm[first:last].casefold())
            if not codes:
                continue  # case folding of the match differs from the stored key (rare scripts)
            start = offsets[first]
            end = offsets[last - 1] + 1
            for code in sorted(codes):
                findings.append(GuardFinding(category=code, score=1.0, guard=self.name, start=start, end=end))
        return findings
