"""Shared, expensive objects of the moderation tests: the real embedder and the trained classifier.

The classifier is trained once per exemplar bank and cached (content-addressed) in the settings'
cache dir, the same place the hub uses, so only the first test run of a new bank pays for training.
"""

from __future__ import annotations

import functools
from pathlib import Path

from sovhub.embedder import Embedder
from sovhub.safety.encoders import build_semantic_guard
from sovhub.safety.lexicon import LexiconGuard
from sovhub.safety.moderation import Moderator
from sovhub.safety.semantic import SemanticGuard
from sovhub.settings import load_settings

EVAL_FILE = Path(__file__).parent / "data" / "eval.jsonl"


@functools.cache
def embedder() -> Embedder:
    return Embedder("multilingual-e5-small")


@functools.cache
def semantic_cache_dir() -> Path:
    return load_settings().cache_dir / "safety"


@functools.cache
def semantic_guard() -> SemanticGuard:
    """The semantic guard the default settings build (their encoder, their classifier)."""
    guard = build_semantic_guard(load_settings(), embedder())
    assert guard.cache_dir == semantic_cache_dir()
    guard.ensure_ready()
    return guard


@functools.cache
def moderator() -> Moderator:
    return Moderator(semantic_guard(), LexiconGuard())
