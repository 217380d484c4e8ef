"""False positives on everyday traffic: what ``/v1/moderations`` and the chat checks flag on benign work.

The everyday set (``tests/safety/data/everyday.jsonl``) holds requests people send a hub every day
(programming, shell, SQL, system administration with the vocabulary of kill, terminate, execute,
destroy, wipe and exploit, security learning, law, tenancy, benefits, health, public services,
news) and the answers a model gives to them, in the eight languages. Every item is safe. It is
held out: none of its texts is in the exemplar bank (a test checks it).

Two verdicts are counted per item:

* ``moderations``: flagged by ``/v1/moderations`` (any hazard score >= 0.5);
* ``chat``: blocked by the chat pipeline's check under the default policy: a request by the input
  check, an answer by the output check as the chat service runs it (every ``OUTPUT_STEP``
  characters and at the end, the new part plus ``OUTPUT_OVERLAP`` characters already checked).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .eval import EvalItem, evaluate
from .guards import GuardFinding
from .moderation import Moderator
from .policy import Policy, decide

__all__ = ["OUTPUT_OVERLAP", "OUTPUT_STEP", "EverydayItem", "false_positives", "hazard_scores", "load_everyday"]

OUTPUT_STEP = 96
OUTPUT_OVERLAP = 400
KINDS = ("request", "answer")


@dataclass(frozen=True, slots=True)
class EverydayItem:
    id: str
    text: str
    lang: str
    kind: str
    topic: str


def load_everyday(path: Path) -> list[EverydayItem]:
    """Read the everyday set; a ConfigError names the line of anything malformed or not labelled safe."""
    if not path.is_file():
        raise ConfigError(f"everyday set not found: {path}")
    items: list[EverydayItem] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            item = EverydayItem(str(obj["id"]), obj["text"], obj["lang"], obj["kind"], obj["topic"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}:{number}: not an everyday item ({exc})") from exc
        if obj.get("label") != "safe" or item.kind not in KINDS or not isinstance(item.text, str):
            raise ConfigError(f"{path}:{number}: expected label 'safe', kind one of {KINDS} and a text")
        items.append(item)
    if not items:
        raise ConfigError(f"{path}: no items")
    return items


def _output_windows(text: str) -> list[str]:
    """The texts the output check reads while an answer of ``text`` streams, then at its end."""
    windows, checked = [], 0
    for pos in [*range(OUTPUT_STEP, len(text), OUTPUT_STEP), len(text)]:
        windows.append(text[max(0, checked - OUTPUT_OVERLAP) : pos])
        checked = pos
    return windows


@dataclass
class _Counts:
    n: int = 0
    moderations: int = 0
    chat: int = 0

    def as_dict(self) -> dict[str, float]:
        return {"n": self.n, "moderations_flagged": self.moderations, "chat_blocked": self.chat,
                "moderations_fpr": round(self.moderations / self.n, 4) if self.n else 0.0,
                "chat_fpr": round(self.chat / self.n, 4) if self.n else 0.0}


@dataclass
class FalsePositives:
    overall: _Counts = field(default_factory=_Counts)
    by_lang: dict[str, _Counts] = field(default_factory=dict)
    by_kind: dict[str, _Counts] = field(default_factory=dict)
    flagged: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"overall": self.overall.as_dict(),
                "by_lang": {k: v.as_dict() for k, v in sorted(self.by_lang.items())},
                "by_kind": {k: v.as_dict() for k, v in sorted(self.by_kind.items())},
                "flagged": self.flagged}


def false_positives(
    moderator: Moderator, policy: Policy, items: Sequence[EverydayItem],
    extra_scan: Callable[[str, str], list[GuardFinding]] | None = None,
) -> FalsePositives:
    """Count the items ``/v1/moderations`` flags and the chat checks block (``extra_scan``: the
    policy's own lexicon, which the chat pipeline runs next to the moderator's guards)."""
    report = FalsePositives()
    results = moderator.moderate_batch([i.text for i in items])
    for item, result in zip(items, results, strict=True):
        texts = [item.text] if item.kind == "request" else _output_windows(item.text)
        blocked: list[str] = []
        for text, res in zip(texts, moderator.moderate_batch(texts, item.lang), strict=True):
            findings = [*res.findings, *(extra_scan(text, item.lang) if extra_scan else [])]
            decision = decide(policy, findings, item.lang)
            if decision.action == "block":
                blocked = decision.categories
                break
        for counts in (report.overall, report.by_lang.setdefault(item.lang, _Counts()),
                       report.by_kind.setdefault(item.kind, _Counts())):
            counts.n += 1
            counts.moderations += result.flagged
            counts.chat += bool(blocked)
        if result.flagged or blocked:
            top = {c: round(s, 3) for c, s in result.hazard_scores.items() if s >= 0.3}
            report.flagged.append({"id": item.id, "text": item.text, "moderations": result.hazard_codes,
                                   "chat_blocked": blocked, "scores": top})
    return report


def hazard_scores(moderator: Moderator, items: Sequence[EvalItem]) -> dict[str, Any]:
    """Recall, precision, F1 and FPR of the flag decision on the hazard evaluation set, per language."""
    report = evaluate(moderator.moderate, items)

    def row(s: Any) -> dict[str, float]:
        return {"n": s.n, "harmful": s.harmful, "precision": round(s.precision, 4),
                "recall": round(s.recall, 4), "f1": round(s.f1, 4), "fpr": round(s.fpr, 4),
                "category_f1": round(s.category_f1, 4)}

    return {"overall": row(report.overall), "by_lang": {k: row(v) for k, v in sorted(report.by_lang.items())}}
