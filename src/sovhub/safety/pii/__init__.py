"""PII detection and redaction: Presidio with checksum-validated recognizers, no NLP model.

    analyzer = PiiAnalyzer()                  # build once, share
    entities = analyzer.analyze("IBAN DE89 3704 0044 0532 0130 00")
    Redactor(secret).redact(text, entities, "pseudonymize", Vault())

:class:`PiiGuard` exposes the analyzer through the guard protocol (findings carry the PII
entity type as their category, e.g. ``IBAN_CODE``).
"""

from __future__ import annotations

from ..guards import GuardFinding
from .analyzer import PiiAnalyzer, PiiEntity, fold
from .anonymize import PLACEHOLDER, Mode, Redactor, StreamRestorer, Vault, VaultStore

__all__ = [
    "PLACEHOLDER",
    "Mode",
    "PiiAnalyzer",
    "PiiEntity",
    "PiiGuard",
    "Redactor",
    "StreamRestorer",
    "Vault",
    "VaultStore",
    "fold",
]


class PiiGuard:
    """The PII analyzer as a guard: one finding per entity, category = entity type."""

    name = "pii"

    def __init__(self, analyzer: PiiAnalyzer) -> None:
        self.analyzer = analyzer

    def scan(self, text: str, lang: str | None) -> list[GuardFinding]:
        return [GuardFinding(e.type, e.score, self.name, e.start, e.end) for e in self.analyzer.analyze(text)]
