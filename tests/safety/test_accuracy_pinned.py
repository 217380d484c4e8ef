"""Safety accuracy pinned per language: the classifier of this exemplar bank against its saved result.

``bench/results/everyday.json`` (``bench/everyday_bench.py``) holds the hazard set's precision,
recall, F1 and false-positive rate overall and per language for one bank (its digest). The tests
recompute them with the classifier the default settings build and fail when the bank changed
without a new result, or when a figure regressed past its tolerance: about one item of a
language (33 harmful, 25 safe), so a real regression shows and run-to-run noise does not.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from sovhub.safety.eval import load_eval
from sovhub.safety.everyday import hazard_scores
from tests.safety.moderation_fixtures import EVAL_FILE, moderator, semantic_guard

SAVED_FILE = Path(__file__).parents[2] / "bench" / "results" / "everyday.json"
SAVED = json.loads(SAVED_FILE.read_text(encoding="utf-8"))
LANGS = ["ar", "de", "en", "es", "fr", "ja", "pl", "uk"]
# Per language: one harmful item of 33 moves recall (and F1) by ~0.03, one safe item of 25 the FPR by 0.04.
F1_DROP, FPR_RISE = 0.031, 0.041
# Overall: a tenth of that (2 to 3 items of 464).
OVERALL_F1_DROP, OVERALL_FPR_RISE = 0.01, 0.011
# The stated floors (docs/benchmarks.md), whatever the saved result: what the bank of 2026-12-06 reached
# (F1 0.938 overall, 0.906 in its weakest language, recall 0.879, FPR 4.5%) less about one item of a
# language (0.02 overall), and the 5% false-positive target itself.
FLOOR_F1, FLOOR_LANG_F1, FLOOR_LANG_RECALL, CEILING_FPR = 0.92, 0.87, 0.84, 0.05


@functools.cache
def measured() -> dict[str, Any]:
    return hazard_scores(moderator(), load_eval(EVAL_FILE))


def test_the_saved_result_is_for_the_current_bank() -> None:
    digest = semantic_guard().model.digest[:20]
    assert SAVED["config"]["model_digest"] == digest, (
        "the exemplar bank or encoder changed: re-run `bench/everyday_bench.py --name everyday` and commit "
        "bench/results/everyday.json (and the figures in docs/benchmarks.md)")
    assert SAVED["config"]["encoder"] == "e5-int8"
    # Saved with the commit it measured: a run on uncommitted code names no code anyone can check out.
    assert re.fullmatch(r"[0-9a-f]{7,40}", SAVED["machine"]["sovhub_commit"]), SAVED["machine"]["sovhub_commit"]
    assert sorted(SAVED["hazard"]["by_lang"]) == LANGS


def test_overall_accuracy_holds_the_saved_result_and_the_floors() -> None:
    now, saved = measured()["overall"], SAVED["hazard"]["overall"]
    assert now["n"] == saved["n"] and now["harmful"] == saved["harmful"]
    assert now["f1"] >= saved["f1"] - OVERALL_F1_DROP, (now, saved)
    assert now["fpr"] <= saved["fpr"] + OVERALL_FPR_RISE, (now, saved)
    assert now["f1"] >= FLOOR_F1 and now["fpr"] <= CEILING_FPR


@pytest.mark.parametrize("lang", LANGS)
def test_each_language_holds_the_saved_result(lang: str) -> None:
    now, saved = measured()["by_lang"][lang], SAVED["hazard"]["by_lang"][lang]
    assert now["f1"] >= saved["f1"] - F1_DROP, (lang, now, saved)
    assert now["fpr"] <= saved["fpr"] + FPR_RISE, (lang, now, saved)
    assert now["f1"] >= FLOOR_LANG_F1 and now["recall"] >= FLOOR_LANG_RECALL, (lang, now)


def test_the_saved_result_meets_the_floors() -> None:
    """The floors are below what the saved result reached: a floor above it would make the bank fail itself."""
    overall, langs = SAVED["hazard"]["overall"], SAVED["hazard"]["by_lang"].values()
    assert overall["f1"] >= FLOOR_F1 and overall["fpr"] <= CEILING_FPR
    assert min(s["f1"] for s in langs) >= FLOOR_LANG_F1 and min(s["recall"] for s in langs) >= FLOOR_LANG_RECALL


def test_the_floors_held_here_are_the_ones_the_docs_state() -> None:
    docs = " ".join((Path(__file__).parents[2] / "docs" / "benchmarks.md").read_text(encoding="utf-8").split())
    assert (f"(F1 ≥ {FLOOR_F1:.2f} overall, ≥ {FLOOR_LANG_F1:.2f} per language, hazard recall ≥ "
            f"{FLOOR_LANG_RECALL:.2f} in every language, hard-safe false-positive rate ≤ {CEILING_FPR:.0%} overall") in docs
    assert (f"(F1 −{F1_DROP} and FPR +{FPR_RISE} per language, −{OVERALL_F1_DROP} / +{OVERALL_FPR_RISE} overall)"
            in docs)


def test_the_tolerance_would_see_a_two_item_regression() -> None:
    """A language losing two of its 33 harmful items fails the per-language check (the test can fail)."""
    saved = SAVED["hazard"]["by_lang"]["de"]
    tp = round(saved["recall"] * saved["harmful"])
    fp = round(saved["fpr"] * (saved["n"] - saved["harmful"]))
    worse_tp = tp - 2
    precision = worse_tp / (worse_tp + fp)
    recall = worse_tp / saved["harmful"]
    f1 = 2 * precision * recall / (precision + recall)
    assert f1 < saved["f1"] - F1_DROP
