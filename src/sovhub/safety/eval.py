"""The evaluation harness behind ``sovhub safety eval``: precision, recall, F1, false positives, latency.

One ``{"text", "lang", "label"}`` per line; ``label`` is a hazard code or ``safe``. The headline
numbers are about the *decision* (flagged or not), per language and overall; ``category F1``
also requires the right hazard code among those flagged. Latency is per message, one message at
a time, through the full default pipeline, with the embedding cache off.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .moderation import ModerationResult
from .taxonomy import HAZARD_CODES, SAFE_LABEL

__all__ = ["EvalItem", "EvalReport", "Scores", "evaluate", "format_report", "load_eval"]


@dataclass(frozen=True, slots=True)
class EvalItem:
    text: str
    lang: str
    label: str


@dataclass
class Scores:
    n: int = 0
    harmful: int = 0
    safe: int = 0
    tp: int = 0
    fp: int = 0
    cat_tp: int = 0
    cat_fp: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / self.harmful if self.harmful else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def fpr(self) -> float:
        return self.fp / self.safe if self.safe else 0.0

    @property
    def category_f1(self) -> float:
        fn = self.harmful - self.cat_tp
        denom = 2 * self.cat_tp + self.cat_fp + fn
        return 2 * self.cat_tp / denom if denom else 0.0


@dataclass
class EvalReport:
    overall: Scores
    by_lang: dict[str, Scores]
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[tuple[EvalItem, list[str]]] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else 0.0


def load_eval(path: Path) -> list[EvalItem]:
    """Read an evaluation file; ConfigError naming the line for anything malformed."""
    if not path.is_file():
        raise ConfigError(f"evaluation file not found: {path}")
    items: list[EvalItem] = []
    known = {SAFE_LABEL, *HAZARD_CODES}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc})") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: invalid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str) for k in ("text", "lang", "label")):
            raise ConfigError(f"{path}:{number}: expected an object with string fields text, lang and label")
        if obj["label"] not in known:
            raise ConfigError(f"{path}:{number}: unknown label {obj['label']!r} (use 'safe' or S1..S14)")
        items.append(EvalItem(text=obj["text"], lang=obj["lang"], label=obj["label"]))
    if not items:
        raise ConfigError(f"{path}: no evaluation items")
    return items


def _count(scores: Scores, item: EvalItem, result: ModerationResult) -> None:
    harmful = item.label != SAFE_LABEL
    scores.n += 1
    scores.harmful += harmful
    scores.safe += not harmful
    if result.flagged:
        scores.tp += harmful
        scores.fp += not harmful
    hit = item.label in result.hazard_codes
    scores.cat_tp += hit
    scores.cat_fp += len(result.hazard_codes) - hit


def evaluate(moderate: Callable[[str, str | None], ModerationResult], items: Sequence[EvalItem]) -> EvalReport:
    """Run ``moderate`` on each item, one at a time, timing each call."""
    report = EvalReport(overall=Scores(), by_lang={})
    for item in items:
        started = time.perf_counter()
        result = moderate(item.text, item.lang)
        report.latencies_ms.append((time.perf_counter() - started) * 1000)
        _count(report.overall, item, result)
        _count(report.by_lang.setdefault(item.lang, Scores()), item, result)
        wrong = result.flagged != (item.label != SAFE_LABEL)
        if wrong or (item.label != SAFE_LABEL and item.label not in result.hazard_codes):
            report.errors.append((item, result.hazard_codes))
    return report


def format_report(report: EvalReport) -> str:
    header = f"{'lang':<8}{'n':>5}{'harmful':>9}{'P':>7}{'R':>7}{'F1':>7}{'FPR':>7}{'catF1':>8}"
    rows = [header, "-" * len(header)]

    def row(name: str, s: Scores) -> str:
        return (f"{name:<8}{s.n:>5}{s.harmful:>9}{s.precision:>7.3f}{s.recall:>7.3f}{s.f1:>7.3f}"
                f"{s.fpr:>7.3f}{s.category_f1:>8.3f}")

    rows += [row(lang, s) for lang, s in sorted(report.by_lang.items())]
    rows += ["-" * len(header), row("overall", report.overall)]
    rows.append(f"latency per message: p50 {report.percentile(50):.2f} ms, p99 {report.percentile(99):.2f} ms "
                f"({len(report.latencies_ms)} messages)")
    return "\n".join(rows)
