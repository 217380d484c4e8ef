"""Calibrates the answers-the-question check (src/sovhub/assistant/answering.py) on the calibration sets.

    PYTHONPATH=src .venv/bin/python bench/answering_calibrate.py   # bench/results/grounded-answering-calibration.json

Never the held-out set. The knowledge base is built as `grounded_bench.py --set calib2` builds it
(each locale's collection holds grounded_eval.json's document and grounded_calib2.json's), then
every question of both calibration sets is searched in its locale's collection (same language)
and, for the cross-language rows, in each other locale's collection (the documents are
translations of each other, so a question answerable in one is answerable in all). For every
passage over the relevance floor the check's evidence is recorded (sentence similarity, topic
coverage), and the thresholds are fitted by a grid search:

- a question is *kept* when some passage answers; an answerable question counts as right only
  when a kept passage holds its fact (its number), an unanswerable one or an ordinary request
  when none is kept;
- same-language thresholds (MIN_SENTENCE, MIN_COVERAGE, SURE_SENTENCE) maximise the unanswerable
  questions declined while every answerable one stays right; ties go to the middle of the range;
- CROSS_SENTENCE alone on the cross-language rows: the most declines while keeping 90% of the
  answerable questions the floor alone keeps.
"""

from __future__ import annotations

import itertools
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
from grounded_bench import build, load_eval, questions  # noqa: E402
from procs import machine_info, write_result  # noqa: E402

from sovhub.assistant.answering import AnswerCheck, Evidence  # noqa: E402
from sovhub.assistant.fidelity import detector_for  # noqa: E402
from sovhub.assistant.knowledge import KnowledgeBase  # noqa: E402
from sovhub.assistant.locales import LocaleRegistry  # noqa: E402
from sovhub.assistant.question_kinds import QuestionKinds  # noqa: E402

FLOOR = 0.83


def _memo(hub: Any) -> None:
    real, cache = hub.embedder.embed, {}

    def embed(texts: list[str], kind: str = "passage") -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if (kind, t) not in cache]
        if missing:
            for text, vector in zip(missing, real(missing, kind=kind), strict=True):
                cache[(kind, text)] = vector
        return np.stack([cache[(kind, t)] for t in texts])

    hub.embedder.embed = embed


def collect(hub: Any) -> list[dict[str, Any]]:
    kb = hub.services.get(KnowledgeBase)
    registry = hub.services.get(LocaleRegistry)
    kinds = hub.services.get(QuestionKinds)
    check = AnswerCheck(hub.embedder, detector_for(hub.settings.assistant.languages).detect)
    sets = {"calibration": load_eval("calibration"), "calib2": load_eval("calib2")}
    rows = []
    for set_name, data in sets.items():
        for asked_code, item in data.items():
            for label, question, fact in questions(item):
                scores = kinds.scores(question)
                for code in data:
                    collection = registry.get(code).default_collection
                    hits = kb.search(question, k=4, collections=[collection], min_similarity=FLOOR)
                    rows.append({
                        "set": set_name, "asked_in": asked_code, "collection_of": code, "label": label,
                        "question": question, "fact": fact, "kind_scores": {k: round(v, 4) for k, v in scores.items()},
                        "hits": [{"similarity": round(e.hit.similarity or 0.0, 4), "sentence": round(e.sentence, 4),
                                  "coverage": None if e.coverage is None else round(e.coverage, 3),
                                  "same_language": e.same_language,
                                  "holds_fact": fact is not None and fact in e.hit.text}
                                 for e in check.evidence(question, hits)],
                    })
    return rows


def _records(row: dict[str, Any], margin: float | None) -> bool:
    scores = row["kind_scores"]
    return margin is not None and scores["personal"] - scores["service"] > margin


def _right(row: dict[str, Any], check: AnswerCheck, margin: float | None = None) -> bool:
    kept = [] if _records(row, margin) else [h for h in row["hits"] if check.answers(_as_evidence(h))]
    if row["label"] == "answerable":
        return any(h["holds_fact"] for h in kept)
    return not kept


def _as_evidence(h: dict[str, Any]) -> Evidence:
    return Evidence(None, h["sentence"], h["coverage"], h["same_language"])  # type: ignore[arg-type]


def score(rows: list[dict[str, Any]], check: AnswerCheck, margin: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label in ("answerable", "unanswerable", "chat"):
        mine = [r for r in rows if r["label"] == label]
        out[label] = [sum(_right(r, check, margin) for r in mine), len(mine)]
    return out


def _middle(values: list[float]) -> float:
    return values[len(values) // 2]


def fit(rows: list[dict[str, Any]]) -> dict[str, Any]:
    same = [r for r in rows if r["asked_in"] == r["collection_of"]]
    cross = [r for r in rows if r["asked_in"] != r["collection_of"]]
    grid_sentence = [round(0.80 + 0.005 * i, 3) for i in range(31)]
    grid_coverage = [0.0, 0.25, 0.33, 0.4, 0.5, 0.6, 0.66, 0.75, 1.0]
    grid_sure = [round(0.90 + 0.01 * i, 2) for i in range(11)]
    best: tuple[int, int] | None = None
    ties: list[tuple[float, float, float]] = []
    for sentence, cover, sure in itertools.product(grid_sentence, grid_coverage, grid_sure):
        check = AnswerCheck(None, lambda _t: None, min_sentence=sentence, min_coverage=cover,  # type: ignore[arg-type]
                            sure_sentence=sure)
        got = score(same, check)
        if got["answerable"][0] < got["answerable"][1]:
            continue
        key = (got["unanswerable"][0], got["chat"][0])
        if best is None or key > best:
            best, ties = key, [(sentence, cover, sure)]
        elif key == best:
            ties.append((sentence, cover, sure))
    assert ties, "no thresholds keep every answerable question"
    # The middle of the tied range, one threshold at a time (the others at their chosen value).
    sentence = _middle(sorted({t[0] for t in ties}))
    cover = _middle(sorted({t[1] for t in ties if t[0] == sentence}))
    sure = _middle(sorted({t[2] for t in ties if t[0] == sentence and t[1] == cover}))
    cross_ok: list[float] = []
    cross_best = -1
    floor_kept = score(cross, _floor_only())["answerable"][0]
    for value in [round(0.78 + 0.005 * i, 3) for i in range(45)]:
        check = AnswerCheck(None, lambda _t: None, cross_sentence=value)  # type: ignore[arg-type]
        got = score(cross, check)
        # Across languages the words cannot match: the bar keeps at least 90% of the answerable
        # questions the floor alone keeps (many do not pass the floor across languages at all).
        if got["answerable"][0] < 0.9 * floor_kept:
            continue
        declined = got["unanswerable"][0] + got["chat"][0]
        if declined > cross_best:
            cross_best, cross_ok = declined, [value]
        elif declined == cross_best:
            cross_ok.append(value)
    cross_value = _middle(cross_ok) if cross_ok else None
    chosen = AnswerCheck(None, lambda _t: None, min_sentence=sentence, min_coverage=cover,  # type: ignore[arg-type]
                         sure_sentence=sure, cross_sentence=cross_value or 1.0)
    # The person's own records: the margin that declines the most with every answerable question kept.
    margins: list[float] = []
    margin_best = -1
    for value in [round(-0.10 + 0.005 * i, 3) for i in range(41)]:
        got = score(same, chosen, value)
        if got["answerable"][0] < got["answerable"][1]:
            continue
        if got["unanswerable"][0] > margin_best:
            margin_best, margins = got["unanswerable"][0], [value]
        elif got["unanswerable"][0] == margin_best:
            margins.append(value)
    margin = _middle(margins) if margins else None
    return {"min_sentence": sentence, "min_coverage": cover, "sure_sentence": sure, "cross_sentence": cross_value,
            "records_margin": margin, "tied_records_margin": [margins[0], margins[-1]] if margins else None,
            "tied_min_sentence": [min(t[0] for t in ties), max(t[0] for t in ties)],
            "same_language": score(same, chosen, margin), "cross_language": score(cross, chosen, margin),
            "same_language_without_records": score(same, chosen),
            "floor_only": {"same_language": score(same, _floor_only()), "cross_language": score(cross, _floor_only())}}


def _floor_only() -> AnswerCheck:
    return AnswerCheck(None, lambda _t: None, min_sentence=0.0, min_coverage=0.0,  # type: ignore[arg-type]
                       sure_sentence=0.0, cross_sentence=0.0)


def describe(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Ranges of each feature per label (best passage of each question, same language)."""
    out: dict[str, Any] = {}
    same = [r for r in rows if r["asked_in"] == r["collection_of"] and r["hits"]]
    for label in ("answerable", "unanswerable", "chat"):
        mine = [r for r in same if r["label"] == label]
        best_sentence = [max(h["sentence"] for h in r["hits"]) for r in mine]
        best_cover = [max((h["coverage"] or 0.0) for h in r["hits"]) for r in mine]
        out[label] = {"questions_with_hits": len(mine),
                      "sentence": [min(best_sentence, default=0), statistics.median(best_sentence or [0]),
                                   max(best_sentence, default=0)],
                      "coverage": [min(best_cover, default=0), statistics.median(best_cover or [0]),
                                   max(best_cover, default=0)]}
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        hub = build(Path(tmp), "calib2")
        try:
            _memo(hub)
            machine = machine_info()
            rows = collect(hub)
        finally:
            hub.close()
    result = {"benchmark": "answers-the-question check, calibration", "machine": machine,
              "config": {"command": "bench/answering_calibrate.py", "floor": FLOOR,
                         "sets": ["bench/data/grounded_eval.json", "bench/data/grounded_calib2.json"]},
              "fit": fit(rows), "ranges": describe(rows), "rows": rows}
    path = write_result("grounded-answering-calibration", result)
    print(json.dumps({"fit": result["fit"], "ranges": result["ranges"]}, indent=1))  # noqa: T201
    print(path)  # noqa: T201


if __name__ == "__main__":
    main()
