"""The built-in guards and the moderator, built once per hub and shared: they hold models.

:class:`BuiltinGuards` are the guards ``safety.guards`` turns on (semantic, lexicon, PII), given
to the pipeline through the ``sovhub_guards`` hook. The :class:`~sovhub.safety.moderation.Moderator`
of ``/v1/moderations`` uses the same semantic guard when it runs, so the hub loads one model and
keeps one embedding cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .encoders import build_semantic_guard
from .guards import Guard
from .lexicon import LexiconGuard
from .moderation import Moderator
from .pipeline import SafetyRuntime
from .semantic import SemanticGuard

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["BuiltinGuards", "build_moderator"]


class BuiltinGuards:
    """The guards ``safety.guards`` names, by name."""

    def __init__(self, hub: Hub) -> None:
        wanted = hub.settings.safety.guards
        self.semantic: SemanticGuard | None = (
            build_semantic_guard(hub.settings, hub.embedder) if "semantic" in wanted else None
        )
        self.by_name: dict[str, Guard] = {}
        if self.semantic is not None:
            self.by_name["semantic"] = self.semantic
        if "lexicon" in wanted:
            self.by_name["lexicon"] = LexiconGuard()
        if "pii" in wanted:
            self.by_name["pii"] = hub.services.get(SafetyRuntime).pii_guard

    def all(self) -> list[Guard]:
        return list(self.by_name.values())


def build_moderator(hub: Hub) -> Moderator:
    """The moderator; its classifier loads (or is trained and cached) on first use, or at warm-up."""
    semantic = hub.services.get(BuiltinGuards).semantic or build_semantic_guard(hub.settings, hub.embedder)
    return Moderator(semantic, LexiconGuard())
