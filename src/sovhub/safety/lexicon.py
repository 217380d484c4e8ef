"""The per-locale lexicon guard: fast phrase matching over normalised text.

Lexicon files are YAML maps of hazard code to phrases, one file per language
(``data/lexicon/<lang>.yaml``); locale packs add their own directories. Phrases are normalised
like the text (:func:`sovhub.safety.guards.normalize`), so one entry also catches its full-width,
zero-width-split, homoglyph and leetspeak spellings.

A lexicon has no context, so it only holds phrases that are harmful in themselves ("buy
stolen card dumps"), never topics ("sarin", "suicide"): a news report or a help request must not
match. All languages are matched at once by default, because a message's language is a hint,
not a fact, and mixing languages is a cheap evasion.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import yaml

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


def _compile(phrases: Sequence[str]) -> re.Pattern[str] | None:
    if not phrases:
        return None
    # Longest first, so the regex engine prefers "buy stolen card dumps" over "card dumps".
    spaced = sorted((p for p in phrases if not _unspaced(p)), key=len, reverse=True)
    unspaced = sorted((p for p in phrases if _unspaced(p)), key=len, reverse=True)
    parts = []
    if spaced:
        parts.append(r"(?<!\w)(?:" + "|".join(re.escape(p) for p in spaced) + r")(?!\w)")
    if unspaced:
        parts.append("(?:" + "|".join(re.escape(p) for p in unspaced) + ")")
    return re.compile("|".join(parts), re.IGNORECASE)


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

    def _pattern(self, lang: str | None) -> re.Pattern[str] | None:
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
        for m in pattern.finditer(norm):
            codes = self.phrases.get(m.group(0).casefold())
            if not codes:
                continue  # case folding of the match differs from the stored key (rare scripts)
            start = offsets[m.start()]
            end = offsets[m.end() - 1] + 1
            for code in sorted(codes):
                findings.append(GuardFinding(category=code, score=1.0, guard=self.name, start=start, end=end))
        return findings
