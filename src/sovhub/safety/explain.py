"""Explanations for the person affected, in their language (en, uk, pl, de, fr, es, ar, ja).

The language is the request's when known (``ChatContext.lang``), otherwise guessed from the
text itself: the script first (Arabic, Japanese, Cyrillic), then a handful of function words
for the Latin-script languages. English is the fallback, never an error.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

from sovhub import linear_re

__all__ = ["LANGUAGES", "explain", "guess_lang", "pick_lang"]

LANGUAGES = ("en", "uk", "pl", "de", "fr", "es", "ar", "ja")
_CATALOG = Path(__file__).parent / "data" / "messages.yaml"
_WORDS = linear_re.compile(f"[{linear_re.LETTER}]+")
_JA = linear_re.compile(r"[\x{3040}-\x{30ff}\x{4e00}-\x{9fff}]")
_AR = linear_re.compile(r"[\x{600}-\x{6ff}]")
_UK = linear_re.compile(r"[\x{400}-\x{4ff}]")
_PL = linear_re.compile("[ąćęłńśźż]")
_FUNCTION_WORDS = {
    "en": {"the", "and", "is", "are", "you", "what", "how", "to", "of", "my", "i", "it", "this"},
    "de": {"der", "die", "das", "und", "ist", "ich", "nicht", "wie", "ein", "eine", "mit", "zu", "sie"},
    "fr": {"le", "la", "les", "et", "est", "je", "des", "une", "pas", "que", "pour", "vous", "comment"},
    "es": {"el", "la", "los", "las", "y", "es", "que", "una", "para", "por", "cómo", "mi", "con"},
    "pl": {"i", "nie", "się", "jest", "to", "jak", "na", "że", "czy", "mój", "moja", "dla", "jestem"},
}


@cache
def _catalog() -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = yaml.safe_load(_CATALOG.read_text(encoding="utf-8"))
    return data


def guess_lang(text: str) -> str:
    sample = text[:2000]
    if _JA.search(sample):
        return "ja"
    if _AR.search(sample):
        return "ar"
    if _UK.search(sample):
        return "uk"
    if _PL.search(sample.lower()):
        return "pl"
    words = [w.lower() for w in _WORDS.findall(sample)]
    best, score = "en", 0
    for lang, vocab in _FUNCTION_WORDS.items():
        hits = sum(1 for w in words if w in vocab)
        if hits > score:
            best, score = lang, hits
    return best


def pick_lang(lang: str | None, text: str) -> str:
    base = (lang or "").split("-")[0].split("_")[0].lower()
    return base if base in LANGUAGES else guess_lang(text)


def explain(
    kind: str, lang: str, categories: list[str], clauses: list[str], version: str,
    decision_id: str | None = None, appeal_url: str | None = None,
) -> str:
    """The sentence for ``kind`` ("blocked", "stopped", "redacted"), plus how to appeal."""
    messages = _catalog().get(lang) or _catalog()["en"]
    names = messages["categories"]
    category = ", ".join(str(names.get(c, c)) for c in categories) or "-"
    text = str(messages[kind]).format(
        category=category, codes=", ".join(categories), clause=", ".join(clauses), version=version
    )
    if decision_id and appeal_url:
        text += " " + str(messages["appeal"]).format(decision_id=decision_id, appeal_url=appeal_url)
    return text
