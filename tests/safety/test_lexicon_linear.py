"""The linear lexicon matcher gives exactly what the former backtracking pattern gave.

The reference below is the lexicon's previous matcher (Python's ``re`` with ``(?<!\\w)``/``(?!\\w)``
lookarounds, longest phrase first, IGNORECASE), kept here only to compare with. Three things are
compared: how two characters are taken as equal ignoring case (every code point against every
character of the shipped phrases), the spans on texts generated in all eight languages, and the
spans on a lexicon built to overlap (phrases inside phrases, shared prefixes and suffixes, phrases
that start or end with punctuation, scripts written without spaces).
"""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from sovhub.safety.guards import GuardFinding
from sovhub.safety.lexicon import _SAME_LETTER, LexiconGuard, _fold_case, _unspaced

LANGS = ["en", "fr", "de", "es", "pl", "uk", "ar", "ja"]


class _Reference:
    """The lexicon's matcher before it was made linear (sovhub 2026-12-05, safety/lexicon.py)."""

    def __init__(self, guard: LexiconGuard) -> None:
        self.guard = guard
        self.all = self._compile(list(guard.phrases))
        self.by_lang = {lang: self._compile(list(t)) for lang, t in guard.tables.items()}

    @staticmethod
    def _compile(phrases: Sequence[str]) -> re.Pattern[str] | None:
        if not phrases:
            return None
        spaced = sorted((p for p in phrases if not _unspaced(p)), key=len, reverse=True)
        unspaced = sorted((p for p in phrases if _unspaced(p)), key=len, reverse=True)
        parts = []
        if spaced:
            parts.append(r"(?<!\w)(?:" + "|".join(re.escape(p) for p in spaced) + r")(?!\w)")
        if unspaced:
            parts.append("(?:" + "|".join(re.escape(p) for p in unspaced) + ")")
        return re.compile("|".join(parts), re.IGNORECASE)

    def scan_normalized(self, norm: str, offsets: list[int], lang: str | None) -> list[GuardFinding]:
        if self.guard.match_all_locales or not lang:
            pattern = self.all
        else:
            pattern = self.by_lang.get(lang.split("-")[0].split("_")[0].lower(), self.all)
        if pattern is None:
            return []
        findings: list[GuardFinding] = []
        for m in pattern.finditer(norm):
            codes = self.guard.phrases.get(m.group(0).casefold())
            if not codes:
                continue
            start, end = offsets[m.start()], offsets[m.end() - 1] + 1
            findings.extend(GuardFinding(category=c, score=1.0, guard="lexicon", start=start, end=end)
                            for c in sorted(codes))
        return findings


def _spans(findings: list[GuardFinding]) -> list[tuple[str, int | None, int | None]]:
    return [(f.category, f.start, f.end) for f in findings]


def _code_points() -> str:
    return "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c < 0xE000)


# --- equal ignoring case, as re has it -------------------------------------------------------------

def test_lower_is_one_character_for_one_but_for_dotted_capital_i() -> None:
    longer = [hex(ord(c)) for c in _code_points() if len(c.lower()) != 1]
    assert longer == ["0x130"]
    assert re.fullmatch("i", "\u0130", re.IGNORECASE) is not None  # re reads its simple lower case, i


def test_same_letter_table_is_the_lower_case_letters_sharing_a_capital() -> None:
    """Derived from this Python's Unicode data: a new Unicode version that adds a pair fails here."""
    by_capital: dict[str, set[str]] = {}
    for c in _code_points():
        if c.lower() == c:
            by_capital.setdefault(c.upper(), set()).add(c)
    derived = {frozenset(group) for group in by_capital.values() if len(group) > 1}
    table: dict[str, set[str]] = {}
    for source, target in _SAME_LETTER.items():
        table.setdefault(str(target), {str(target)}).add(chr(source))
    assert {frozenset(group) for group in table.values()} == derived


def _alphabet(guards: Sequence[LexiconGuard]) -> set[str]:
    chars = {c for guard in guards for phrase in guard.phrases for c in phrase}
    # Plus the letters that fold unusually, so the comparison covers them whatever the lexicons hold.
    chars |= {chr(k) for k in _SAME_LETTER} | {str(v) for v in _SAME_LETTER.values()}
    return chars | set("\u0130\u212a\u212b\u2126\u03a3\u1e9e\u00df\u01c5\u13a0\uab70")


def test_every_phrase_character_equals_what_re_ignorecase_matches() -> None:
    """For each character a phrase holds, the code points it matches: re.IGNORECASE's set is ours."""
    every = _code_points()
    folded = _fold_case(every)
    assert len(folded) == len(every)
    groups: dict[str, set[str]] = {}
    for original, fold in zip(every, folded, strict=True):
        groups.setdefault(fold, set()).add(original)
    differ = {}
    for p in sorted(_alphabet([LexiconGuard()])):
        theirs = set(re.findall(re.escape(p), every, re.IGNORECASE))
        ours = groups[_fold_case(p)]
        if theirs != ours:
            differ[p] = (sorted(theirs ^ ours))
    assert not differ


# --- the shipped lexicons, generated texts in all eight languages ---------------------------------

# Look-alikes and case variants an attacker (or a plain typist) writes.
_VARIANTS = {"i": ["I", "\u0131", "\u0130"], "s": ["S", "\u017f"], "k": ["K", "\u212a"], "a": ["A", "\u00e0"],
             "e": ["E", "\u0435"], "o": ["0", "\u043e"], "\u0441": ["\u0421", "\u1c83"], "\u0432": ["\u1c80"],
             "\u0442": ["\u0422", "\u1c84"], "\u03c3": ["\u03a3", "\u03c2"]}
_SEPARATORS = [" ", " ", " ", "", "_", "-", ".", ", ", "x", "1", "\u00e9", "\u0436", "\u306e", "\u0645",
               "\u200b", "  ", "\n", "!", "\u3002", "'"]
_SCRIPTS = {"en": "abcdefghijklmnopqrstuvwxyz", "fr": "abcdeéèfghiîjklmnoôpqrstuùvwxyzç",
            "de": "abcdefghijklmnopqrstuvwxyzäöüß", "es": "abcdefghijklmnñopqrstuvwxyzáéíóú",
            "pl": "aąbcćdeęfghijklłmnńoóprsśtuwyzźż", "uk": "абвгґдеєжзиіїйклмнопрстуфхцчшщьюя",
            "ar": "ابتثجحخدذرزسشصضطظعغفقكلمنهوي", "ja": "あいうえおかきくけこさしすせそたちつてとなにのはまやらわんアイウカキサリン作方法"}


def _mangle(rng: random.Random, phrase: str) -> str:
    roll = rng.random()
    if roll < 0.15:
        return phrase.upper()
    if roll < 0.25:
        return phrase.title()
    if roll < 0.4:
        return "".join(rng.choice([c, *_VARIANTS.get(c, [c.upper()])]) for c in phrase)
    if roll < 0.55:  # a piece of it: prefixes and suffixes overlap the next token
        cut = rng.randrange(1, max(2, len(phrase)))
        return phrase[:cut] if rng.random() < 0.5 else phrase[cut:]
    return phrase


def _texts(rng: random.Random, phrases: list[str], letters: str, count: int) -> list[str]:
    out = []
    for _ in range(count):
        tokens = []
        for _ in range(rng.randint(1, 10)):
            if rng.random() < 0.55:
                tokens.append(_mangle(rng, rng.choice(phrases)))
            else:
                tokens.append("".join(rng.choice(letters) for _ in range(rng.randint(1, 8))))
            tokens.append(rng.choice(_SEPARATORS))
        out.append("".join(tokens[:-1] if rng.random() < 0.5 else tokens))
    return out


def _yaml_phrases(lang: str) -> list[str]:
    import yaml

    from sovhub.safety.lexicon import DEFAULT_LEXICON_DIR

    data = yaml.safe_load((DEFAULT_LEXICON_DIR / f"{lang}.yaml").read_text(encoding="utf-8"))
    return [p for phrases in data.values() for p in phrases]


@pytest.mark.parametrize("lang", LANGS)
def test_shipped_lexicons_give_the_same_spans(lang: str) -> None:
    guards = [LexiconGuard(), LexiconGuard(match_all_locales=False)]
    references = [_Reference(g) for g in guards]
    rng = random.Random(f"lexicon-{lang}")
    phrases = _yaml_phrases(lang) + [p for p in guards[0].tables[lang]]
    found = 0
    for text in _texts(rng, phrases, _SCRIPTS[lang], 1500):
        for guard, reference in zip(guards, references, strict=True):
            for where in (lang, None, "en"):
                ours = guard.scan(text, where)
                assert _spans(ours) == _spans(reference.scan_normalized(*_normalized(text), where)), text
                # Not normalised first: raw text reaches the matcher with all its case and punctuation.
                raw = guard.scan_normalized(text, list(range(len(text))), where)
                assert _spans(raw) == _spans(reference.scan_normalized(text, list(range(len(text))), where)), text
                found += len(ours) + len(raw)
    assert found > 500  # the texts did hit phrases, not only near misses


def _normalized(text: str) -> tuple[str, list[int]]:
    from sovhub.safety.guards import normalize_with_offsets

    return normalize_with_offsets(text)


# --- a lexicon built to overlap --------------------------------------------------------------------

_OVERLAPPING = """\
S1:
  - abc def
  - abc
  - bc de
  - def ghi
  - c def g
  - abc def ghi jk
  - "xx-"
  - "-yy"
  - "a.b"
  - "_zz"
  - "zz_"
  - "b c"
  - サリン
  - サリンの作
  - リンの
  - "ab サリン"
  - xyz
  - "xyz-サリン"
S2:
  - def
  - "abc def "
  - ghi jk
  - ΣΟΦΙΑ
  - ıst
"""


@pytest.fixture(scope="module")
def overlapping(tmp_path_factory: pytest.TempPathFactory) -> tuple[LexiconGuard, _Reference]:
    folder: Path = tmp_path_factory.mktemp("overlap")
    (folder / "xx.yaml").write_text(_OVERLAPPING, encoding="utf-8")
    guard = LexiconGuard([folder], base_dir=None)
    return guard, _Reference(guard)


def test_overlapping_phrases_give_the_same_spans(overlapping: tuple[LexiconGuard, _Reference]) -> None:
    guard, reference = overlapping
    rng = random.Random("overlap")
    alphabet = list("abcdefghijkxyz") + [" ", " ", " ", "-", ".", "_", "サ", "リ", "ン", "の", "作", "1", "é",
                                         "Σ", "σ", "ς", "ο", "φ", "ι", "α", "I", "İ", "ı", "S", "T", "\u212a"]
    chunks = [*alphabet, "abc", "def", "ghi", "jk", "サリン", "の作", "xx-", "-yy", "zz", "ABC", "DeF", "σοφια"]
    hits = 0
    for _ in range(20000):
        text = "".join(rng.choice(chunks) for _ in range(rng.randint(1, 25)))
        offsets = list(range(len(text)))
        ours = guard.scan_normalized(text, offsets, None)
        assert _spans(ours) == _spans(reference.scan_normalized(text, offsets, None)), text
        hits += len(ours)
    assert hits > 5000


@pytest.mark.parametrize(("text", "spans"), [
    # "abc def ghi jk" at 0 is followed by a letter: the longest phrase at a word start that also
    # ends at one is "abc def" (0-7), then "ghi" starts "ghi jkx", which ends in a letter too.
    ("abc def ghi jkx", [(0, 7)]),
    # A phrase rejected at its end does not hide a shorter one at the same place...
    ("abc defx", [(0, 3)]),
    # ...nor one starting inside it ("bc de" inside "xabc def": rejected at "b", and "def" after it).
    ("xabc def", [(5, 8)]),
    # Unspaced phrases are found inside words, the longest first...
    ("xサリンの作り方", [(1, 6)]),
    ("ab サリン", [(0, 6)]),
    # ...but a spaced phrase at word boundaries comes first, even before a longer unspaced one.
    ("xyz-サリン", [(0, 3), (4, 7)]),
    ("zz_zz", []),
    ("zz_ ok", [(0, 3)]),
])
def test_where_boundaries_reject_a_match(overlapping: tuple[LexiconGuard, _Reference], text: str,
                                         spans: list[tuple[int, int]]) -> None:
    guard, reference = overlapping
    offsets = list(range(len(text)))
    ours = sorted({(f.start, f.end) for f in guard.scan_normalized(text, offsets, None)})
    assert ours == spans
    assert _spans(guard.scan_normalized(text, offsets, None)) == _spans(reference.scan_normalized(text, offsets, None))
