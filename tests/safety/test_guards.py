"""normalize(): the evasion-resistant view guards match against."""

from __future__ import annotations

import pytest

from sovhub.safety.guards import MAX_NORMALIZE_CHARS, Guard, GuardFinding, normalize, normalize_with_offsets


@pytest.mark.parametrize(("raw", "expected"), [
    ("k\u0456ll the p\u0435ople", "kill the people"),         # Cyrillic і and е in Latin words
    ("\u0432\u043e\u043cb", "вомb"),                          # mostly Cyrillic: Latin is not forced on it
    ("ki\u200bll", "kill"),                                   # zero-width space
    ("ki\u200dl\u2060l", "kill"),                             # joiner, word joiner
    ("\u202ekill\u202c", "kill"),                             # bidi override
    ("ｋｉｌｌ", "kill"),                                       # full-width
    ("k\u0338i\u0338l\u0338l\u0338", "kill"),                 # Zalgo / overlay marks
    ("b0mb h4ck3r", "bomb hacker"),                           # leetspeak inside words
    ("covid19 4chan 2024", "covid19 4chan 2024"),             # digits at word edges are kept
    ("a  \t\n b", "a b"),
    ("a\x00b", "ab"),                                         # NUL and control characters
    ("مـــرحـبـا", "مرحبا"),                                   # Arabic tatweel
    ("\ud800x", "x"),                                         # lone surrogate dropped
    ("", ""),
])
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize("text", [
    "Як справи? Привіт, світ.",
    "Це нормальний український текст про вибори і протести.",
    "Η Ελλάδα είναι όμορφη.",
    "東京タワーに行きました。",
    "Dzień dobry, Łódź i Gdańsk.",
])
def test_real_text_in_other_scripts_is_unchanged(text: str) -> None:
    assert normalize(text) == text


def test_offsets_point_into_the_original() -> None:
    raw = "x \u200bki\u200bll y"
    norm, offsets = normalize_with_offsets(raw)
    assert norm == "x kill y"
    start = norm.index("kill")
    assert raw[offsets[start]] == "k"
    assert raw[offsets[start + 3]] == "l"
    assert len(offsets) == len(norm)


def test_input_is_bounded() -> None:
    assert MAX_NORMALIZE_CHARS >= 10_000_000
    assert len(normalize("a" * 300_000)) == 300_000
    assert normalize("abc def", max_chars=3) == "abc"


def test_guard_protocol_is_structural() -> None:
    class Dummy:
        name = "dummy"

        def scan(self, text: str, lang: str | None) -> list[GuardFinding]:
            return [GuardFinding("S1", 0.9, self.name, 0, 1)]

    assert isinstance(Dummy(), Guard)
    assert Dummy().scan("x", None)[0].start == 0
