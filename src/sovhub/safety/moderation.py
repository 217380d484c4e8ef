"""The Moderator: the default guards (semantic + lexicon, plus any extra) as OpenAI moderation results.

Every guard reports hazard codes; OpenAI's categories are derived from them through the taxonomy
(:data:`sovhub.safety.taxonomy.OPENAI_MAP`). A category's score is the highest score of the
hazards that map onto it; scores are decision scores, so ``score >= 0.5`` is exactly ``flagged``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .guards import Guard, GuardFinding, normalize_with_offsets
from .lexicon import LexiconGuard
from .semantic import SemanticGuard, findings_from_windows
from .taxonomy import HAZARD_CODES, OPENAI_CATEGORIES, OPENAI_MAP

__all__ = ["FLAG_AT", "ModerationResult", "Moderator", "add_findings"]

FLAG_AT = 0.5


@dataclass
class ModerationResult:
    flagged: bool
    hazard_scores: dict[str, float]
    hazard_codes: list[str]
    findings: list[GuardFinding] = field(default_factory=list)

    @property
    def category_scores(self) -> dict[str, float]:
        scores = dict.fromkeys(OPENAI_CATEGORIES, 0.0)
        for code, score in self.hazard_scores.items():
            for name in OPENAI_MAP.get(code, ()):
                scores[name] = max(scores[name], score)
        return scores

    @property
    def categories(self) -> dict[str, bool]:
        flagged = set(self.hazard_codes)
        out = dict.fromkeys(OPENAI_CATEGORIES, False)
        for code in flagged:
            for name in OPENAI_MAP.get(code, ()):
                out[name] = True
        return out


class Moderator:
    """Runs the semantic and lexicon guards (and any extra guards) on texts."""

    def __init__(self, semantic: SemanticGuard, lexicon: LexiconGuard, extra_guards: Sequence[Guard] = ()) -> None:
        self.semantic = semantic
        self.lexicon = lexicon
        self.extra_guards = list(extra_guards)

    @property
    def guards(self) -> list[Guard]:
        return [self.semantic, self.lexicon, *self.extra_guards]

    def moderate(self, text: str, lang: str | None = None) -> ModerationResult:
        return self.moderate_batch([text], lang)[0]

    def moderate_batch(self, texts: Sequence[str], lang: str | None = None) -> list[ModerationResult]:
        """One result per text; the semantic guard embeds the whole batch in one call."""
        normalized = [normalize_with_offsets(t) for t in texts]
        semantic = self.semantic.score_normalized([n for n, _ in normalized])
        results = []
        for text, (norm, offsets), (best, spans, rows) in zip(texts, normalized, semantic, strict=True):
            scores = {code: float(v) for code, v in zip(HAZARD_CODES, best, strict=True)}
            findings = findings_from_windows(self.semantic.name, spans, rows, offsets, len(text))
            findings += self.lexicon.scan_normalized(norm, offsets, lang)
            for guard in self.extra_guards:
                findings += guard.scan(text, lang)
            for f in findings:
                if f.category in scores:
                    scores[f.category] = max(scores[f.category], f.score)
            codes = [c for c in HAZARD_CODES if scores[c] >= FLAG_AT]
            results.append(ModerationResult(flagged=bool(codes), hazard_scores=scores, hazard_codes=codes,
                                            findings=findings))
        return results


def add_findings(result: ModerationResult, findings: Sequence[GuardFinding]) -> ModerationResult:
    """``result`` with more hazard findings (the guard model's) folded into its scores and codes."""
    scores = dict(result.hazard_scores)
    for f in findings:
        if f.category in scores:
            scores[f.category] = max(scores[f.category], f.score)
    codes = [c for c in HAZARD_CODES if scores[c] >= FLAG_AT]
    return ModerationResult(flagged=bool(codes), hazard_scores=scores, hazard_codes=codes,
                            findings=[*result.findings, *findings])
