"""Linear-time text handling: every regex over user text runs on RE2 (sovhub.linear_re).

* the Unicode classes linear_re spells out match exactly what Python's ``re`` matches;
* patterns RE2 cannot run (lookarounds, backreferences) or whose meaning would change
  (ASCII-only ``\\w \\d \\s \\b``) are refused at compile (import) time;
* an AST walk over src/sovhub fails when a module not on :data:`RE_ALLOWLIST` uses ``re``;
* every linear pattern the package compiles finishes on 100k-character adversarial inputs within
  a bound relative to a plain Python scan of the same text.
"""

from __future__ import annotations

import ast
import importlib
import re
import time
from pathlib import Path

import pytest
import re2

from sovhub import linear_re
from sovhub.safety.lexicon import LexiconGuard

SRC = Path(__file__).resolve().parents[1] / "src" / "sovhub"

# Modules that may still use Python's backtracking ``re``, and why. Trusted input only.
RE_ALLOWLIST: dict[str, str] = {
    "sovhub/energy/rapl.py": "RAPL powercap directory names from /sys",
    "sovhub/energy/gpu.py": "Prometheus text from the local GPU exporter the operator configures",
    "sovhub/settings/__init__.py": "database URL from the operator's settings",
    "sovhub/assistant/locales/pack.py": "locale pack files shipped with the hub",
    "sovhub/backends/catalog.py": "backend names from the operator's catalogue",
    "sovhub/sovereignty/keystore.py": "key kinds the hub itself names",
    "sovhub/charts.py": "SVG the hub renders itself",
}


def _re_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    uses: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name == "re" for a in node.names):
            uses.append(f"import re (line {node.lineno})")
        elif isinstance(node, ast.ImportFrom) and node.module == "re":
            uses.append(f"from re import (line {node.lineno})")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "re":
            uses.append(f"re.{node.attr} (line {node.lineno})")
    return uses


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_backtracking_regex_outside_the_allowlist() -> None:
    offenders = {}
    for path in _modules():
        rel = path.relative_to(SRC.parent).as_posix()
        uses = _re_uses(path)
        if uses and rel not in RE_ALLOWLIST:
            offenders[rel] = uses
    assert not offenders, f"use sovhub.linear_re (RE2) for these, or allowlist trusted input: {offenders}"


def test_allowlist_has_no_stale_entries() -> None:
    stale = [rel for rel in RE_ALLOWLIST if not _re_uses(SRC.parent / rel)]
    assert not stale, f"these no longer use re; drop them from RE_ALLOWLIST: {stale}"


def test_the_walk_sees_a_new_re_call(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import re\n\ndef f(t):\n    return re.search(r'(a+)+$', t)\n", encoding="utf-8")
    assert _re_uses(bad) == ["import re (line 1)", "re.search (line 4)"]


@pytest.mark.parametrize("pattern", [r"(?<=a)b", r"a(?!b)", r"(a)\1", r"(?<!\pL)x"])
def test_patterns_re2_cannot_run_are_refused(pattern: str) -> None:
    with pytest.raises(linear_re.PatternRefused, match="RE2 cannot run"):
        linear_re.compile(pattern)


@pytest.mark.parametrize("pattern", [r"\w+", r"[^\W_]", r"\d", r"x\s", r"\bword\b", r"\S+"])
def test_ascii_only_classes_are_refused(pattern: str) -> None:
    with pytest.raises(linear_re.PatternRefused, match="ASCII-only"):
        linear_re.compile(pattern)


def test_escaped_backslash_is_not_a_class() -> None:
    assert linear_re.compile(r"a\\w").search("a\\w") is not None


# Latin-1 + Latin Extended, Cyrillic, Arabic (marks included), Devanagari digits, kana, CJK, Hangul,
# full-width forms, general punctuation/spaces.
_RANGES = [(0, 0x250), (0x400, 0x530), (0x600, 0x700), (0x900, 0x980), (0x2000, 0x2070),
           (0x3000, 0x3100), (0x4E00, 0x4F00), (0xAC00, 0xAD00), (0xFF00, 0xFFF0)]


@pytest.mark.parametrize(("ours", "python"), [
    (linear_re.WORD, r"\w"), (linear_re.ALNUM, r"[^\W_]"), (linear_re.LETTER, r"[^\W\d_]"),
    (linear_re.DIGIT, r"\d"), (linear_re.SPACE, r"\s"),
])
def test_unicode_classes_match_pythons(ours: str, python: str) -> None:
    linear = linear_re.compile(f"[{ours}]")
    backtracking = re.compile(python)
    differ = [hex(cp) for lo, hi in _RANGES for cp in range(lo, hi)
              if (linear.fullmatch(chr(cp)) is None) != (backtracking.fullmatch(chr(cp)) is None)]
    assert not differ


def test_words_in_cyrillic_arabic_and_cjk_text() -> None:
    word = linear_re.compile(f"[{linear_re.WORD}]+")
    text = "Привіт, світе_1! مرحبا بالعالم ٣٤ 你好 Ünïcödé"
    assert word.findall(text) == re.findall(r"\w+", text)
    digits = linear_re.compile(f"[{linear_re.DIGIT}]+")
    assert digits.findall("IBAN ٣٤٥ and 123 and ४५") == ["٣٤٥", "123", "४५"]


def test_ignorecase_and_dotall_options() -> None:
    assert linear_re.compile("привет", ignorecase=True).search("ПРИВЕТ мир") is not None
    assert linear_re.compile("привет").search("ПРИВЕТ") is None
    assert linear_re.compile("a.b", dotall=True).search("a\nb") is not None
    assert linear_re.compile("a.b").search("a\nb") is None


# Modules whose patterns read user text (switched to linear_re); each is imported and every RE2
# pattern among its globals is attacked.
_LINEAR_MODULES = [
    "sovhub.accounts", "sovhub.api.middleware", "sovhub.api.chat.protocol", "sovhub.access.tiers",
    "sovhub.assistant.web.chat", "sovhub.assistant.web.admin_appeals", "sovhub.assistant.web.credits_pages",
    "sovhub.assistant.i18n", "sovhub.files.store", "sovhub.safety.e5_file", "sovhub.safety.guard_model",
    "sovhub.safety.guards", "sovhub.safety.static_table", "sovhub.safety.explain",
    "sovhub.safety.pii.checksums", "sovhub.safety.pii.anonymize", "sovhub.safety.policy",
    "sovhub.assistant.turns",
    "sovhub.assistant.fidelity", "sovhub.assistant.grounding", "sovhub.assistant.knowledge.extract",
    "sovhub.assistant.knowledge.service", "sovhub.assistant.knowledge.lexical",
    "sovhub.assistant.knowledge.chunking",
]


def _linear_patterns() -> list[tuple[str, object]]:
    found = []
    for name in _LINEAR_MODULES:
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            items = value.values() if isinstance(value, dict) else [value]
            found.extend((f"{name}.{attr}", v) for v in items if isinstance(v, re2._Regexp))
    # Built from shipped data on first use rather than at import.
    policy = importlib.import_module("sovhub.safety.policy")
    found.extend((f"sovhub.safety.policy.{topic}", pattern)
                 for topic, (_, pattern) in policy._protected_terms().items())
    return found


def test_every_switched_module_holds_linear_patterns() -> None:
    names = {label.rsplit(".", 1)[0] for label, _ in _linear_patterns()}
    assert names == set(_LINEAR_MODULES)


N = 100_000
# Inputs built to make backtracking engines explode: long runs that almost match.
_ADVERSARIAL = {
    "digits": "1" * N,
    "spaces": " " * N,
    "letters": "a" * N,
    "near_placeholder": "<PERSON_" * (N // 8),
    "near_citation": "[1" * (N // 2),
    "hyphen_breaks": "a-" * (N // 2),
    "punct_spaces": ". " * (N // 2),
    "backticks": "```" + "`a" * (N // 2),
    "url_like": "https://" + "a" * N,
    "codes": "S1," * (N // 3) + "x",
    "cyrillic": "Привет " * (N // 7),
    "name_like": "a." * (N // 2) + "!",
    # Near matches of the lexicon's phrases: each rejected at its end, at its start, cut short, or
    # (dense) all taken; overlapping ones in a script written without spaces.
    "lexicon_glued_end": "how to kill myselfx " * (N // 20),
    "lexicon_glued_start": "xhow to kill myself " * (N // 20),
    "lexicon_cut": "best way to kill mysel " * (N // 23),
    "lexicon_dense": "how to kill myself " * (N // 19),
    "lexicon_unspaced": "サリンの作り" * (N // 6),
    "lexicon_punct": ":(){ :|:& };" * (N // 12),
}


def _scan_time(text: str) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        sum(1 for ch in text if ch == "\x00")
        best = min(best, time.perf_counter() - t0)
    return best


@pytest.mark.parametrize("kind", sorted(_ADVERSARIAL))
def test_linear_patterns_on_adversarial_input(kind: str) -> None:
    text = _ADVERSARIAL[kind]
    # A plain Python pass over the text; RE2 plus the binding's per-match Python work (up to one match
    # per character) stays within a
    # constant factor of it, a backtracking blow-up (quadratic or worse on 100k chars) does not.
    bound = 2000 * _scan_time(text)
    slow = {}
    for label, pattern in _linear_patterns():
        t0 = time.perf_counter()
        for _ in pattern.finditer(text):  # type: ignore[attr-defined]
            pass
        pattern.search(text)  # type: ignore[attr-defined]
        pattern.fullmatch(text)  # type: ignore[attr-defined]
        elapsed = time.perf_counter() - t0
        if elapsed > bound:
            slow[label] = round(elapsed / bound * 2000)
    assert not slow, f"times the plain scan, bound 2000: {slow}"


@pytest.fixture(scope="module")
def lexicon() -> LexiconGuard:
    return LexiconGuard()


@pytest.mark.parametrize("kind", sorted(_ADVERSARIAL))
def test_lexicon_on_adversarial_input(lexicon: LexiconGuard, kind: str) -> None:
    """The lexicon's matcher (RE2 marks, a trie reads) within the same bound, all locales at once."""
    text = _ADVERSARIAL[kind]
    offsets = list(range(len(text)))
    t0 = time.perf_counter()
    findings = lexicon.scan_normalized(text, offsets, None)
    elapsed = time.perf_counter() - t0
    assert elapsed < 2000 * _scan_time(text), f"{elapsed:.3f} s"
    if kind == "lexicon_dense":
        assert len(findings) == N // 19
    elif kind.startswith("lexicon_glued") or kind == "lexicon_cut":
        assert findings == []


def test_python_re_backtracks_where_re2_does_not() -> None:
    # The attack the bound above is sized for: a nested quantifier that Python's re needs
    # exponential time for; RE2 answers at once. Kept small so ``re`` still finishes here.
    evil, text = r"(a+)+$", "a" * 22 + "!"
    t0 = time.perf_counter()
    assert re.match(evil, text) is None
    backtracking = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert linear_re.compile(evil).match(text) is None
    linear = time.perf_counter() - t0
    assert linear * 20 < backtracking


@pytest.mark.parametrize("literal", ["a b", "x.y+z", "c++ (x)", "«ä»", "a\\b", "$^|[]{}*?#&~-", "вибухівка"])
def test_escape_matches_the_literal_only(literal: str) -> None:
    pattern = linear_re.compile(linear_re.escape(literal))
    assert pattern.fullmatch(literal) is not None
    assert pattern.search(literal.replace(literal[-1], "Z") + "!") is None or literal[-1] == "Z"
